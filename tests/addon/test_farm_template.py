"""`rubble farm export`: the Open Job Description template, checked by the real `openjd check`
(the farm tools' environment, make venv-farm). Running it end to end is test_farm_job.py."""
import json
import subprocess
import sys

import pytest

from conftest import REPO, SMALL_SHOT, run_cli, write_preset

OPENJD = REPO / ".venv-farm" / "bin" / "openjd"
FARM_SHOT = {**SMALL_SHOT, "model": {**SMALL_SHOT["model"], "window": 2, "overlap": 1, "weights": "tiny"},
             "long_shot": {"mode": "windows"}}  # several generate tasks


@pytest.fixture(scope="module")
def openjd():
    if not OPENJD.exists():
        pytest.fail(f"{OPENJD} missing: run `make venv-farm` (make test does)")
    return OPENJD


def openjd_check(openjd, template):
    return subprocess.run([str(openjd), "check", str(template)], capture_output=True, text=True, timeout=120)


def test_window_count_matches_the_backend_plan():
    sys.path.insert(0, str(REPO))
    from addon.core.farm import window_count
    from inference.windows import plan
    for frames in range(1, 40):
        for window in range(1, 18):
            for overlap in range(0, window):
                expected = len(plan(frames, window, overlap))
                assert window_count(frames, window, overlap) == expected, (frames, window, overlap)


def test_export_of_a_new_shot_is_a_valid_chunked_job(tmp_path, openjd):
    preset = write_preset(tmp_path / "small.toml", **FARM_SHOT)
    shot = tmp_path / "shots" / "sh010"
    result = run_cli("farm", "export", str(shot), "--preset", str(preset), "--out", str(shot / "job.json"),
                     "--chunk-size", "3", "--blender", "/opt/blender/blender", "--backend-python", "/venv/bin/python")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "generate as 3 windows" in result.stderr
    checked = openjd_check(openjd, shot / "job.json")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    template = json.loads((shot / "job.json").read_text())
    assert template["specificationVersion"] == "jobtemplate-2023-09"
    assert "TASK_CHUNKING" in template["extensions"]
    steps = {s["name"]: s for s in template["steps"]}
    assert list(steps) == ["bake", "passes", "control", "generate", "composite"]
    assert [s.get("dependencies", [{}])[0].get("dependsOn") for s in template["steps"]] == \
        [None, "bake", "passes", "control", "generate"]
    (frames,) = steps["passes"]["parameterSpace"]["taskParameterDefinitions"]
    assert frames["type"] == "CHUNK[INT]" and frames["range"] == "{{Param.Frames}}"
    assert frames["chunks"] == {"defaultTaskCount": "{{Param.ChunkSize}}", "rangeConstraint": "CONTIGUOUS"}
    (window,) = steps["generate"]["parameterSpace"]["taskParameterDefinitions"]
    assert window == {"name": "Window", "type": "INT", "range": "0-2"}, "one task per window of 2 frames sharing 1"
    assert steps["generate"]["script"]["actions"]["onRun"]["args"][-2:] == ["--windows", "{{Task.Param.Window}}"]
    gpus = steps["generate"]["hostRequirements"]["amounts"]
    assert gpus == [{"name": "amount.worker.gpu", "min": "{{Param.GpuCount}}"}], "the GPU amount is a job parameter"

    params = {p["name"]: p for p in template["parameterDefinitions"]}
    assert params["ShotDir"]["default"] == ".", "the template beside the shot finds it wherever both move"
    assert "default" not in params["RubbleRoot"], "OpenJD refuses a default outside the template's folder"
    assert "-p RubbleRoot=" in result.stderr, "the export says which parameters the submitter must set"
    assert params["Frames"]["default"] == "1-4" and params["ChunkSize"]["default"] == 3
    assert params["Blender"]["default"] == "/opt/blender/blender"
    assert params["BackendPython"]["default"] == "/venv/bin/python"
    bake_args = steps["bake"]["script"]["actions"]["onRun"]["args"]
    assert bake_args[-2:] == ["--preset", "{{Param.ShotDir}}/preset.toml"], "the bake reads the preset the shot carries"
    assert (shot / "preset.toml").read_text() == preset.read_text()
    assert str(tmp_path) not in json.dumps(template), "no absolute path in the template: defaults are relative"


def test_yaml_and_free_noise_templates_pass_openjd_check(tmp_path, openjd):
    sys.path.insert(0, str(REPO))
    from addon.core import farm
    for mode in (farm.WINDOWS, farm.FREE_NOISE):
        out = tmp_path / mode / "job.yaml"
        settings = farm.JobSettings(shot_dir=tmp_path / "shot with 'quotes' and spaces", out=out,
                                    name='A "quoted" name: with colons # and hashes', frame_start=1,
                                    frame_end=30, windows=4, mode=mode)
        farm.write(farm.job_template(settings), out)
        checked = openjd_check(openjd, out)
        assert checked.returncode == 0, out.read_text() + checked.stdout + checked.stderr
        generate = [s for s in farm.job_template(settings)["steps"] if s["name"] == "generate"][0]
        assert ("parameterSpace" in generate) == (mode == farm.WINDOWS), "free_noise generates in one task"


def test_export_refuses_an_empty_chunk(tmp_path):
    result = run_cli("farm", "export", str(tmp_path / "shot"), "--out", str(tmp_path / "job.yaml"), "--chunk-size", "0")
    assert result.returncode == 1 and "at least one frame" in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "job.yaml").exists() and not (tmp_path / "shot").exists()
