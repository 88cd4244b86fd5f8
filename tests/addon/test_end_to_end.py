"""The whole pipeline headless, as `make demo` runs it: preset -> passes -> backend -> movie.

Runs the CLI in fresh Blender processes and the backend in its own environment with
the tiny random-weight model; then checks that a second run recomputes nothing.
"""
import json

import bpy
import pytest

from addon import pipeline
from addon.core.preset import load_preset
from addon.scene import sequencer
from conftest import SMALL_SHOT, run_cli, write_preset

STAGES = ("build", "trigger", "bake", "passes", "generate", "composite")


@pytest.fixture(scope="module")
def shot(tmp_path_factory, backend_python, tiny_model_dir):
    root = tmp_path_factory.mktemp("e2e")
    preset = write_preset(root / "small.toml", **SMALL_SHOT)
    args = ("shot", str(root / "shot"), "--preset", str(preset), "--backend-python", str(backend_python),
            "--tiny-model", str(tiny_model_dir))
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr[-4000:]
    return root / "shot", args, first


def test_shot_directory_is_complete(shot):
    shot_dir, _, _ = shot
    for name in ("shot.blend", "shot.json", "provenance.json", "contact_sheet.png", "final.mp4"):
        assert (shot_dir / name).is_file(), f"{name} missing"
    assert sorted(p.name for p in (shot_dir / "passes").glob("*.exr")) == [f"{f:04d}.exr" for f in range(1, 5)]
    assert sorted(p.name for p in (shot_dir / "frames").glob("*.png")) == [f"{f:04d}.png" for f in range(1, 5)]
    for kind in ("depth", "normal", "clay"):  # the backend read Blender's own EXRs
        assert len(list((shot_dir / "control" / kind).glob("*.png"))) == 4, f"control/{kind} incomplete"
    assert not list(shot_dir.rglob("*.tmp*")), "a temporary file was left behind"


def test_movie_is_h264_mp4(shot):
    data = (shot[0] / "final.mp4").read_bytes()
    assert data[4:8] == b"ftyp", "not an MP4 container"
    assert b"avc1" in data[:200_000], "no H.264 (avc1) track"


def test_random_weights_are_disclosed(shot):
    shot_dir, _, first = shot
    provenance = json.loads((shot_dir / "provenance.json").read_text())
    assert "random_weights" in first.stderr or "random weights" in first.stderr.lower()
    assert json.dumps(provenance).count("smoke") >= 1
    assert "AI-generated" in json.dumps(provenance)


def test_sequencer_has_generated_above_clay(shot):
    bpy.ops.wm.open_mainfile(filepath=str(shot[0] / "shot.blend"))
    edit = bpy.data.scenes["Rubble Edit"]
    strips = {s.name: s for s in sequencer.strip_collection(edit.sequence_editor)}
    assert strips["Generated (AI)"].channel > strips["Clay"].channel
    assert strips["Generated (AI)"].frame_final_duration == 4
    assert bpy.data.scenes["Rubble"].rigidbody_world.point_cache.is_baked


def test_second_run_recomputes_nothing(shot):
    shot_dir, args, _ = shot
    before = {p: p.stat().st_mtime_ns for p in shot_dir.rglob("*") if p.is_file() and ".rubble" not in p.parts
              and "logs" not in p.parts}
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr[-3000:]
    for stage in STAGES:
        assert f"{stage}: up to date, skipped" in second.stderr, f"{stage} ran again:\n{second.stderr[-2000:]}"
    changed = [p for p, mtime in before.items() if p.exists() and p.stat().st_mtime_ns != mtime]
    assert not changed, f"rewritten on a no-op run: {changed[:5]}"


# What the backend requires of each repository (inference/models.py), in diffusers' layouts.
BASE_FILES = ("model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
              "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "text_encoder/config.json",
              "text_encoder/model.safetensors", "tokenizer/vocab.json", "tokenizer/merges.txt",
              "scheduler/scheduler_config.json")
SINGLE_MODEL_FILES = ("config.json", "diffusion_pytorch_model.safetensors")


def _fake_hub_cache(root, preset):
    """The preset's repositories (base, adapter, one ControlNet per control) laid out as the Hugging
    Face cache does, with empty files."""
    model = preset.model
    for repo, revision, files in ((model.base, model.base_revision, BASE_FILES),
                                  (model.motion_adapter, model.motion_adapter_revision, SINGLE_MODEL_FILES),
                                  *((c.model, c.revision, SINGLE_MODEL_FILES) for c in preset.controls)):
        folder = root / ("models--" + repo.replace("/", "--"))
        commit = "0" * 40
        (folder / "refs").mkdir(parents=True)
        (folder / "refs" / revision).write_text(commit)
        for name in files:
            path = folder / "snapshots" / commit / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")


def test_smoke_test_frames_are_regenerated_once_real_weights_arrive(shot, tmp_path, monkeypatch):
    import shutil
    shot_dir, args, _ = shot
    copy = tmp_path / "shot"
    shutil.copytree(shot_dir, copy)
    rerun = [copy if a == str(shot_dir) else a for a in args]
    _fake_hub_cache(tmp_path / "hub", load_preset(args[args.index("--preset") + 1]))
    result = run_cli(*map(str, rerun), env={"HF_HUB_CACHE": str(tmp_path / "hub")})
    assert "generate: up to date, skipped" not in result.stderr, "kept smoke-test frames despite real weights"
    # The fake weights are empty files, so loading them must fail, loudly and without losing the frames.
    assert result.returncode == 1
    assert len(list((copy / "frames").glob("*.png"))) == 4


def test_cancel_during_generate_keeps_finished_windows_and_resumes(tmp_path, backend_python, tiny_model_dir):
    # Two windows of two frames (windows mode: free_noise makes the shot one window), slow enough
    # (30 steps) to cancel after the first one.
    preset = load_preset(write_preset(tmp_path / "slow.toml", **{
        **SMALL_SHOT, "look": {"steps": 30}, "model": {**SMALL_SHOT["model"], "window": 2, "overlap": 0},
        "long_shot": {"mode": "windows"}}))

    def job():
        return pipeline.ShotJob(shot_dir=tmp_path / "shot", preset=preset, backend_python=str(backend_python),
                                tiny_model=tiny_model_dir, owns_session=True)

    first = job()
    with pytest.raises(pipeline.Cancelled):
        for progress in pipeline.run(first):
            if progress.stage == "generate:window" and "done" in progress.message:
                first.cancel_requested = True
    shot_dir = first.shot_dir
    assert (shot_dir / "windows" / "000" / "record.json").is_file(), "the finished window was not kept"
    assert not (shot_dir / "windows" / "001" / "record.json").exists()
    assert not (shot_dir / "final.mp4").exists()

    messages = [p.message for p in pipeline.run(job())]
    assert "window 0 unchanged, skipped" in messages, messages
    assert (shot_dir / "final.mp4").is_file()


def test_draft_goes_to_drafts_and_its_own_strip_beside_the_final(shot):
    """The Draft button's stages through the CLI: drafts/ is written, frames/ and the final strips stay."""
    shot_dir, args, _ = shot
    final = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted((shot_dir / "frames").glob("*.png"))}
    final[shot_dir / "provenance.json"] = ((shot_dir / "provenance.json").stat().st_mtime_ns,
                                           (shot_dir / "provenance.json").read_bytes())
    run = run_cli(*args, "--stages", "passes,draft")
    assert run.returncode == 0, run.stderr[-4000:]
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in final} == final, "a draft never touches the final"
    assert sorted(p.name for p in (shot_dir / "drafts" / "frames").glob("*.png")) == [f"{f:04d}.png" for f in range(1, 5)]
    assert json.loads((shot_dir / "drafts" / "provenance.json").read_text())["kind"] == "draft"
    bpy.ops.wm.open_mainfile(filepath=str(shot_dir / "shot.blend"))
    strips = {s.name: s for s in sequencer.strip_collection(bpy.data.scenes["Rubble Edit"].sequence_editor)}
    assert {"Clay", "Generated (AI)", sequencer.DRAFT_STRIP} <= set(strips)
    assert strips[sequencer.DRAFT_STRIP].channel == sequencer.DRAFT_CHANNEL
    assert strips[sequencer.DRAFT_STRIP].frame_final_duration == 4
    assert strips[sequencer.DRAFT_STRIP].elements[0].filename == "0001.png"
    assert "drafts" in strips[sequencer.DRAFT_STRIP].directory
