"""End to end with the tiny random-weight model: the real pipeline code in a real subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, make_shot, run_backend


def generate(shot: Path, tiny_model: Path, *extra: str):
    return run_backend("generate", str(shot), "--tiny-model", str(tiny_model), *extra)


def frames(shot: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p), dtype=np.float64) for p in sorted((shot / "frames").glob("*.png"))])


@pytest.fixture(scope="module")
def generated(tmp_path_factory, tiny_model):
    shot = make_shot(tmp_path_factory.mktemp("gen") / "shot")
    run = generate(shot, tiny_model)
    assert run.returncode == 0, run.stderr
    return shot, run


def test_tiny_model_shot_produces_frames_provenance_and_contact_sheet(generated):
    shot, run = generated
    assert [w["code"] for w in run.of_type("warning")] == ["random_weights"], "tiny output must be announced loudly"
    (result,) = run.of_type("result")
    assert result["smoke_test"] is True and result["blended"] is True
    assert result["windows_generated"] == [0, 1, 2]
    names = sorted(p.name for p in (shot / "frames").iterdir())
    assert names == ["0001.png", "0002.png", "0003.png", "0004.png"], "frames only, no temporary files left"
    image = Image.open(shot / "frames" / "0001.png")
    assert image.size == (64, 48), "frames come back at the shot resolution, not the model's 128x80"
    assert image.text["Disclaimer"] == "AI-generated"
    assert image.text["Warning"] == "random weights — smoke test"
    assert frames(shot).std() > 1.0, "frames are not blank"

    provenance = json.loads((shot / "provenance.json").read_text())
    assert provenance["schema"] == "rubble.provenance/1"
    assert provenance["smoke_test"] is True and provenance["weights"] == "random weights — smoke test"
    assert provenance["disclosure"] == "AI-generated" and provenance["seed"] == 1234
    assert len(provenance["model"]["used"]["tiny_model_sha256"]) == 64
    assert [w["frames"] for w in provenance["windows"]] == [[1, 2], [2, 3], [3, 4]]
    assert {"torch", "diffusers", "python"} <= set(provenance["versions"])

    sheet = np.asarray(Image.open(shot / "contact_sheet.png").convert("RGB"))
    assert sheet.shape[1] == 4 * 256, "four columns: clay | depth | normal | generated"
    assert tuple(sheet[2, 2]) == (200, 0, 0), "the RANDOM WEIGHTS banner is red across the top"


def test_same_seed_and_inputs_reproduce_the_frames(generated, tmp_path, tiny_model):
    shot, _ = generated
    again = make_shot(tmp_path / "again")
    assert generate(again, tiny_model).returncode == 0
    assert np.array_equal(frames(again), frames(shot))


def test_different_depth_gives_different_frames(generated, tmp_path, tiny_model):
    shot, _ = generated
    other = make_shot(tmp_path / "other", box_scale=0.5)  # the box twice as near
    assert generate(other, tiny_model).returncode == 0
    difference = np.abs(frames(other) - frames(shot)).mean()
    assert difference > 1.0, f"the depth control must change the frames (mean difference {difference:.3f})"


def test_rerun_skips_unchanged_windows(generated, tiny_model):
    shot, _ = generated
    run = generate(shot, tiny_model)
    assert run.returncode == 0, run.stderr
    (result,) = run.of_type("result")
    assert result["windows_generated"] == [] and result["windows_skipped"] == [0, 1, 2]


def test_cancel_keeps_finished_windows_and_rerun_resumes(tmp_path, tiny_model):
    shot = make_shot(tmp_path / "shot", look={"steps": 60})  # slow enough to cancel mid-window
    proc = subprocess.Popen(
        [sys.executable, "-m", "inference", "generate", str(shot), "--tiny-model", str(tiny_model)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["type"] == "progress" and events[-1]["stage"] == "window" and "done" in events[-1]["message"]:
            (shot / "cancel.request").touch()
    assert proc.wait(timeout=120) == 130
    (cancelled,) = [e for e in events if e["type"] == "cancelled"]
    assert cancelled["kept"] == ["windows/000"]
    assert not (shot / "frames").exists(), "no frames are blended from an unfinished set of windows"
    first_record = shot / "windows" / "000" / "record.json"
    kept_at = first_record.stat().st_mtime_ns

    run = generate(shot, tiny_model)
    assert run.returncode == 0, run.stderr
    (result,) = run.of_type("result")
    assert result["windows_skipped"] == [0] and result["windows_generated"] == [1, 2]
    assert first_record.stat().st_mtime_ns == kept_at
    assert len(list((shot / "frames").glob("*.png"))) == 4
    assert not (shot / "cancel.request").exists()


def test_a_subset_of_windows_then_blend(tmp_path, tiny_model):
    shot = make_shot(tmp_path / "shot")
    run = generate(shot, tiny_model, "--windows", "0,2")
    assert run.returncode == 0, run.stderr
    (result,) = run.of_type("result")
    assert result["windows_generated"] == [0, 2] and result["blended"] is False
    blend = run_backend("blend", str(shot))
    assert blend.returncode == 1 and blend.of_type("error")[0]["code"] == "windows_missing"
    assert "--windows 1" in blend.of_type("error")[0]["hint"]
    assert generate(shot, tiny_model, "--windows", "1").returncode == 0
    assert len(list((shot / "frames").glob("*.png"))) == 4
