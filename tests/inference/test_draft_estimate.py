"""The draft tier (inference/draft.py) and the estimate (inference/estimate.py), with the tiny model
in real subprocesses: estimate calibrates once and reuses its cache, generate records the estimate
beside the measured time, and a draft writes drafts/ only."""

import json
import math
import re
from pathlib import Path

import pytest
from PIL import Image

from conftest import make_shot, run_backend


BACKEND_TIMEOUT = 900  # seconds: a shared, busy machine; an idle one needs a few


def tree(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under `folder`: its modification time and content."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def shot_and_runs(tmp_path_factory, tiny_model):
    """One small windows-mode shot (3 windows): estimate twice, generate, then draft twice."""
    root = tmp_path_factory.mktemp("draft")
    shot = make_shot(root / "shot")
    env = {"RUBBLE_ESTIMATE_CACHE": str(root / "estimates")}
    model = ("--tiny-model", str(tiny_model), "--device", "cpu")
    runs = {"estimate": run_backend("estimate", str(shot), *model, env=env, timeout=BACKEND_TIMEOUT),
            "estimate_again": run_backend("estimate", str(shot), *model, env=env, timeout=BACKEND_TIMEOUT),
            "generate": run_backend("generate", str(shot), *model, env=env, timeout=BACKEND_TIMEOUT)}
    final = {name: tree(shot / name) for name in ("frames", "windows")}
    final["provenance"] = (shot / "provenance.json").read_bytes()
    runs["draft"] = run_backend("draft", str(shot), *model, env=env, timeout=BACKEND_TIMEOUT)
    runs["draft_again"] = run_backend("draft", str(shot), *model, env=env, timeout=BACKEND_TIMEOUT)
    for name, run in runs.items():
        assert run.returncode == 0, f"{name}: {run.stderr}"
    return shot, root / "estimates", runs, final


def test_estimate_reports_time_and_memory_and_caches_its_calibration(shot_and_runs):
    shot, cache, runs, _ = shot_and_runs
    (first,) = runs["estimate"].of_type("result")
    assert first["stage"] == "estimate" and first["outputs"] == ["estimate.json"]
    assert first["cached"] is False and first["smoke_test"] is True
    assert first["windows"] == 3 and first["steps"] == 2
    assert first["seconds"] > first["load_seconds"] > 0
    assert math.isclose(first["minutes"], first["seconds"] / 60, abs_tol=0.01)
    assert re.fullmatch(r"about \d+ (seconds|minutes?) on this device for this shot", first["message"])
    assert first["peak_memory_kind"] == "peak_rss" and first["peak_memory_bytes"] > 0
    calibration = first["calibration"]
    assert calibration["frames"] == 2 and calibration["steps"] == 4
    assert calibration["step_seconds"] > 0 and calibration["decode_seconds_per_frame"] > 0
    assert calibration["first_call_seconds"] >= 0
    assert [e["done"] for e in runs["estimate"].of_type("progress") if e["stage"] == "calibrate"] == [1, 1, 2, 3, 4], \
        "a 1-step warm-up call, then the 4 timed steps"
    assert [p.stem for p in cache.glob("*.json")] == [first["calibration_key"]]
    assert json.loads((shot / "estimate.json").read_text())["seconds"] == first["seconds"]

    (again,) = runs["estimate_again"].of_type("result")
    assert again["cached"] is True, "the same configuration on the same device is not calibrated twice"
    assert not [e for e in runs["estimate_again"].of_type("progress") if e["stage"] == "calibrate"]
    assert {k: again[k] for k in ("calibration_key", "calibrated_at", "calibration", "seconds")} == \
           {k: first[k] for k in ("calibration_key", "calibrated_at", "calibration", "seconds")}


def test_generate_records_the_cached_estimate_beside_the_measured_time(shot_and_runs):
    shot, _, runs, _ = shot_and_runs
    (estimated,) = runs["estimate"].of_type("result")
    (generated,) = runs["generate"].of_type("result")
    recorded = json.loads((shot / "provenance.json").read_text())["estimate"]
    assert recorded["predicted"]["seconds"] == estimated["seconds"]
    assert recorded["calibration_key"] == estimated["calibration_key"]
    assert recorded["measured_seconds"] == generated["timings"]["windows"] > 0
    assert recorded["windows_generated"] == recorded["windows_total"] == 3
    assert recorded["measured_peak_memory_bytes"] > 0


def test_draft_writes_drafts_only_and_resumes(shot_and_runs):
    shot, _, runs, final = shot_and_runs
    assert {name: tree(shot / name) for name in ("frames", "windows")} == {k: final[k] for k in ("frames", "windows")}, \
        "a draft never touches the final's frames or windows"
    assert (shot / "provenance.json").read_bytes() == final["provenance"]

    (result,) = runs["draft"].of_type("result")
    assert result["kind"] == "draft" and result["smoke_test"] is True
    assert result["size"] == [64, 40], "[draft] scale 0.5 of the 128x80 generation size"
    assert result["steps"] == 6 and result["windows_generated"] == [0, 1, 2]
    names = sorted(p.name for p in (shot / "drafts" / "frames").iterdir())
    assert names == ["0001.png", "0002.png", "0003.png", "0004.png"]
    image = Image.open(shot / "drafts" / "frames" / "0001.png")
    assert image.size == (64, 48) and image.text["Comment"] == "draft"

    provenance = json.loads((shot / "drafts" / "provenance.json").read_text())
    assert provenance["kind"] == "draft" and provenance["disclosure"] == "AI-generated"
    assert provenance["draft"]["scheduler"] == "LCMScheduler"
    assert provenance["look"]["steps"] == 6 and provenance["look"]["guidance_scale"] == 1.5
    assert [w["index"] for w in provenance["windows"]] == [0, 1, 2]
    record = json.loads((shot / "drafts" / "windows" / "000" / "record.json").read_text())
    assert record["inputs"]["size"] == [64, 40]

    (again,) = runs["draft_again"].of_type("result")
    assert again["windows_generated"] == [] and again["windows_skipped"] == [0, 1, 2], "a rerun resumes"


def test_the_draft_pipeline_is_animatelcm_with_the_lcm_scheduler(tmp_path, tiny_model):
    """In process: the tiny AnimateLCM stand-in is what the motion modules hold, LCMScheduler steps them."""
    import torch
    from diffusers import LCMScheduler, MotionAdapter

    from inference import draft, models, tiny_model as tiny
    from inference import shot as shot_module

    shot = shot_module.load(make_shot(tmp_path / "shot", frames=2))
    generated = draft.draft_shot(shot, draft.settings(shot))
    spec = draft.spec(generated, "tiny", tiny_model)
    pipe = draft.load_pipeline(spec, "cpu", generated, None, 0.8)
    assert type(pipe.scheduler) is LCMScheduler and pipe.scheduler.config.beta_schedule == "linear"
    lcm = MotionAdapter.from_pretrained(tiny_model / tiny.DRAFT_MOTION_ADAPTER)
    final = MotionAdapter.from_pretrained(tiny_model / tiny.MOTION_ADAPTER)
    held = pipe.unet.down_blocks[0].motion_modules[0].proj_in.weight
    assert torch.equal(held, lcm.down_blocks[0].motion_modules[0].proj_in.weight)
    assert not torch.equal(held, final.down_blocks[0].motion_modules[0].proj_in.weight)


@pytest.mark.parametrize("table, problem", [
    ({"steps": 3}, "steps 3 must be between 4 and 8"),
    ({"guidance_scale": float("nan")}, "not a finite number"),
    ({"scale": 1.5}, "scale 1.5 must be between 0.25 and 1.0"),
    ({"steps": True}, "steps must be of type int"),
    ({"sampler": "euler"}, "unknown keys ['sampler']"),
])
def test_draft_settings_are_validated(table, problem):
    from inference import draft

    with pytest.raises(ValueError, match=re.escape(problem)):
        draft.parse(table)
    assert draft.size(512, 320, 0.5) == (256, 160) and draft.size(100, 60, 0.5) == (48, 32)


def test_the_shots_draft_table_is_what_the_draft_runs_with(tmp_path):
    """The [draft] table travels in shot.json's preset (its section name, not the drafts/ folder's)."""
    from inference import draft
    from inference import shot as shot_module

    shot_dir = make_shot(tmp_path / "shot", frames=2)
    manifest = json.loads((shot_dir / "shot.json").read_text())
    manifest["preset"]["draft"] = {"scale": 0.25, "steps": 4, "guidance_scale": 1.0}
    (shot_dir / "shot.json").write_text(json.dumps(manifest))
    shot = shot_module.load(shot_dir)
    settings = draft.settings(shot)
    assert (settings.scale, settings.steps, settings.guidance_scale) == (0.25, 4, 1.0)
    generated = draft.draft_shot(shot, settings)
    assert (generated.model.width, generated.model.height) == draft.size(shot.model.width, shot.model.height, 0.25)
    assert generated.look.steps == 4
