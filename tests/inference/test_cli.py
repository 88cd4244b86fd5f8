"""The command line and its refusals: instant commands, schema versions, bad files, missing weights."""

import json
import subprocess
import sys
import time

from conftest import REPO, make_shot, run_backend


def test_help_and_validate_do_not_import_torch(tmp_path):
    shot = make_shot(tmp_path / "shot", frames=2)
    code = (
        "import sys; from inference.__main__ import main; "
        f"rc = main(['validate', {str(shot)!r}]); "
        "assert rc == 0; assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, 'heavy import'"
    )
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert time.perf_counter() - started < 5
    event = json.loads(proc.stdout)
    assert event["type"] == "result" and event["windows"] == [[1, 2]]
    assert run_backend("--help").returncode == 0


def test_bad_command_line_exits_2():
    assert run_backend("generate").returncode == 2


def test_unknown_major_schema_is_refused(tmp_path):
    shot = make_shot(tmp_path / "shot", frames=1)
    data = json.loads((shot / "shot.json").read_text())
    data["schema"] = "rubble.shot/2"
    (shot / "shot.json").write_text(json.dumps(data))
    run = run_backend("generate", str(shot), "--weights", "tiny")
    assert run.returncode == 1
    (error,) = run.of_type("error")
    assert error["code"] == "unsupported_schema"
    assert "rubble.shot/2" in error["message"] and "rubble.shot/1" in error["message"]
    assert error["hint"] and error["traceback"]


def test_corrupt_exr_names_the_file_and_the_fix(tmp_path):
    shot = make_shot(tmp_path / "shot", frames=3)
    damaged = shot / "passes" / "0002.exr"
    damaged.write_bytes(damaged.read_bytes()[:200])
    run = run_backend("control", str(shot))
    assert run.returncode == 1
    (error,) = run.of_type("error")
    assert error["code"] == "corrupt_pass"
    assert str(damaged) in error["message"]
    assert "Re-render the passes for frame 2" in error["hint"]


def test_missing_exr_is_reported(tmp_path):
    shot = make_shot(tmp_path / "shot", frames=3)
    (shot / "passes" / "0003.exr").unlink()
    run = run_backend("control", str(shot))
    assert run.returncode == 1
    assert run.of_type("error")[0]["code"] == "missing_pass"


def test_pretrained_without_weights_says_what_to_download(tmp_path):
    shot = make_shot(tmp_path / "shot", frames=1)
    run = run_backend("generate", str(shot), "--weights", "pretrained", env={"HF_HOME": str(tmp_path / "empty-hf")})
    assert run.returncode == 1
    (error,) = run.of_type("error")
    assert error["code"] == "missing_weights"
    preset = json.loads((shot / "shot.json").read_text())["preset"]
    assert "python -m inference fetch" in error["hint"]
    model = preset["model"]
    named = [(model[role], model[role + "_revision"]) for role in ("base", "motion_adapter")]
    named += [(control["model"], control["revision"]) for control in preset["controls"]]
    assert len(named) == 4
    for repo, revision in named:
        assert f"{repo}@{revision}" in error["hint"]
    assert str(tmp_path / "empty-hf") in error["hint"], "the hint names the cache it looked in"
    assert not (tmp_path / "empty-hf").exists() or not any((tmp_path / "empty-hf").rglob("*.safetensors"))


def test_doctor_reports(tmp_path):
    run = run_backend("doctor", "--tiny-model", str(tmp_path / "none"), env={"HF_HOME": str(tmp_path / "hf")})
    assert run.returncode == 0, run.stderr
    (report,) = run.of_type("result")
    assert report["versions"]["torch"] and report["versions"]["diffusers"]
    assert report["real_weights"]["present"] is False and report["tiny_model"]["present"] is False
    assert "Rubble backend doctor" in run.stderr
    # What a bug report needs (issue 20 item 3): interpreter, GPU memory, free disk.
    assert report["interpreter"] == sys.executable and report["free_disk_gb"] > 0 and "vram_gb" in report
    for line in ("interpreter  ", "free disk    ", "GPU          "):
        assert line in run.stderr
