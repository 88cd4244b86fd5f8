"""End to end with the tiny random-weight model: the real pipeline code in a real subprocess."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, box_depth, make_shot, run_backend, write_passes


def default_controls():
    """The default preset's [[controls]] as the backend reads them."""
    import tomllib

    from inference import shot as shot_module

    preset = tomllib.loads((REPO / "presets" / "default.toml").read_text(encoding="utf-8"))
    return shot_module.model_settings(preset["model"], shot_module.preset_controls(preset)).controls


def generate(shot: Path, tiny_model: Path, *extra: str):
    return run_backend("generate", str(shot), "--tiny-model", str(tiny_model), *extra)


def frames(shot: Path, folder: str = "frames") -> np.ndarray:
    return np.stack([np.asarray(Image.open(p), dtype=np.float64) for p in sorted((shot / folder).glob("*.png"))])


def window_frames(shot: Path, index: int) -> np.ndarray:
    return frames(shot, f"windows/{index:03d}")


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

    record = json.loads((shot / "windows" / "000" / "record.json").read_text())
    assert record["inputs"]["runtime"]["device"] == "cpu" and record["inputs"]["runtime"]["dtype"] == "float32"
    assert {"torch", "diffusers"} <= set(record["inputs"]["runtime"])
    assert str(shot.parent) not in json.dumps(record["inputs"]) and "tiny_model" not in record["inputs"]["model"], (
        "a window's inputs name the model by content, never by path"
    )

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


def test_a_finished_generate_run_again_rewrites_nothing(generated, tiny_model):
    """A farm retries tasks: a generate task whose windows and frames are done is a no-op."""
    shot, _ = generated
    outputs = [*sorted((shot / "frames").glob("*.png")), shot / "contact_sheet.png", shot / "provenance.json"]
    before = {p.name: p.stat().st_mtime_ns for p in outputs}
    run = generate(shot, tiny_model, "--windows", "1")
    assert run.returncode == 0, run.stderr
    (result,) = run.of_type("result")
    assert result["windows_generated"] == [] and result["blended"] is True and result["outputs"] == []
    assert {p.name: p.stat().st_mtime_ns for p in outputs} == before, "frames blended again from the same windows"


def test_a_blend_killed_half_way_is_redone(generated, tmp_path, tiny_model):
    """provenance.json is written after the frames: frames left by a killed blend are blended again."""
    shot = tmp_path / "shot"
    shutil.copytree(generated[0], shot)
    (shot / "provenance.json").unlink()  # what a run killed between the frames and provenance leaves
    (shot / "frames" / "0003.png").write_bytes(b"torn")
    run = generate(shot, tiny_model)
    assert run.returncode == 0, run.stderr
    (result,) = run.of_type("result")
    assert result["windows_generated"] == [] and "frames/0003.png" in result["outputs"]
    assert Image.open(shot / "frames" / "0003.png").size == (64, 48)
    assert (shot / "provenance.json").is_file()


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


def test_the_same_model_by_a_relative_path_is_the_same_model(generated, tiny_model):
    shot, _ = generated
    relative = os.path.relpath(tiny_model, REPO)  # run_backend runs in REPO
    assert not Path(relative).is_absolute()
    run = generate(shot, Path(relative))
    assert run.returncode == 0, run.stderr
    (result,) = run.of_type("result")
    assert result["windows_generated"] == [] and result["windows_skipped"] == [0, 1, 2]
    assert result["blended"] is True


def test_changed_passes_redo_exactly_their_windows_and_stale_ones_are_never_blended(tmp_path, tiny_model):
    shot = make_shot(tmp_path / "shot")  # windows 0: frames 1-2, 1: 2-3, 2: 3-4
    assert generate(shot, tiny_model).returncode == 0
    # Re-render frame 2 only, the box a metre nearer: its depth map changes, the shot's depth range
    # (set by the wall and the ground) does not, so frames 1, 3 and 4 keep their control maps.
    write_passes(shot / "passes" / "0002.exr", 64, 48, box_depth(2) - 1.0, 2)

    farm_task = generate(shot, tiny_model, "--windows", "0")
    assert farm_task.returncode == 0, farm_task.stderr
    (result,) = farm_task.of_type("result")
    assert result["windows_generated"] == [0] and result["blended"] is False, "window 1 still shows the old frame 2"
    (warning,) = [w for w in farm_task.of_type("warning") if w["code"] == "windows_stale"]
    assert "[1]" in warning["message"] and "--windows 1" in warning["message"]

    blend = run_backend("blend", str(shot))
    assert blend.returncode == 1
    (error,) = blend.of_type("error")
    assert error["code"] == "windows_stale" and "[1]" in error["message"]
    assert f"python -m inference generate {shot} --windows 1" in error["hint"]

    run = generate(shot, tiny_model)
    assert run.returncode == 0, run.stderr
    (result,) = run.of_type("result")
    assert result["windows_generated"] == [1] and result["windows_skipped"] == [0, 2] and result["blended"] is True


def test_a_window_generated_alone_equals_the_same_window_of_a_full_run(generated, tmp_path, tiny_model):
    shot, _ = generated
    alone = make_shot(tmp_path / "alone")
    assert generate(alone, tiny_model, "--windows", "1").returncode == 0
    assert np.array_equal(window_frames(alone, 1), window_frames(shot, 1))


def test_each_window_denoises_its_own_slice_of_the_shot_noise(tmp_path, tiny_model):
    # A still box: windows 0 and 1 get identical control frames, so only the noise can tell them apart.
    shot = make_shot(tmp_path / "still", moving=False)
    assert generate(shot, tiny_model, "--windows", "0,1").returncode == 0
    difference = np.abs(window_frames(shot, 0) - window_frames(shot, 1)).mean()
    assert difference > 1.0, f"windows 0 and 1 started from the same noise (mean difference {difference:.3f})"


def test_an_uneven_shot_blends_every_frame_as_a_convex_mix_of_its_windows(tmp_path, tiny_model):
    # 7 frames, windows of 4 sharing 2: windows (1-4), (3-6) and the moved-back (4-7); frame 4 is in all three.
    # Generated at the shot's own size, so blending is not hidden behind a resize.
    shot = make_shot(tmp_path / "uneven", frames=7, size=(128, 80), model={"window": 4, "overlap": 2})
    run = generate(shot, tiny_model)
    assert run.returncode == 0, run.stderr
    (result,) = run.of_type("result")
    assert result["windows_generated"] == [0, 1, 2] and result["blended"] is True
    blended = frames(shot)
    assert len(blended) == 7
    covering = {0: [0], 1: [0], 2: [0, 1], 3: [0, 1, 2], 4: [1, 2], 5: [1, 2], 6: [2]}
    starts = [0, 2, 3]
    for offset, indices in covering.items():
        name = f"windows/{{:03d}}/{offset + 1:04d}.png"
        stack = np.stack([np.asarray(Image.open(shot / name.format(i)), dtype=np.float64) for i in indices])
        assert all(starts[i] <= offset < starts[i] + 4 for i in indices)
        if len(indices) == 1:
            assert np.array_equal(blended[offset], stack[0]), f"frame {offset + 1} is window {indices[0]}'s own"
        else:
            assert (blended[offset] >= stack.min(0) - 0.5).all() and (blended[offset] <= stack.max(0) + 0.5).all(), (
                f"frame {offset + 1} is not a weighted mean of its windows (weights not summing to 1?)"
            )


def _nan_vae_copy(tiny_model: Path, out: Path) -> Path:
    """A copy of the tiny model whose VAE decoder outputs NaN (its last convolution's weights)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny_model, out)
    weights_path = out / "base" / "vae" / "diffusion_pytorch_model.safetensors"
    weights = load_file(weights_path)
    weights["decoder.conv_out.weight"] = weights["decoder.conv_out.weight"] * float("nan")
    save_file(weights, weights_path)
    return out


def test_non_finite_frames_are_an_error_with_no_record_and_no_frames(tmp_path, tiny_model):
    broken = _nan_vae_copy(tiny_model, tmp_path / "nan-model")
    shot = make_shot(tmp_path / "shot", frames=2)  # one window
    run = generate(shot, broken)
    assert run.returncode == 1
    (error,) = run.of_type("error")
    assert error["code"] == "non_finite_output", error
    assert "fp32" in error["hint"] and "guidance_scale" in error["hint"]
    assert not (shot / "windows" / "000" / "record.json").exists(), "a NaN window must be redone, not recorded"
    assert list((shot / "windows").rglob("*.png")) == [] if (shot / "windows").exists() else True
    assert not (shot / "frames").exists()


def _adapter_config_only(tiny_model: Path, out: Path) -> Path:
    """A tiny-model directory holding only the motion adapter's config: nothing can load from it."""
    (out / "motion_adapter").mkdir(parents=True)
    shutil.copy(tiny_model / "rubble_tiny_model.json", out)
    shutil.copy(tiny_model / "motion_adapter" / "config.json", out / "motion_adapter")
    return out


def test_a_window_longer_than_the_motion_adapter_is_refused_before_loading(tmp_path, tiny_model):
    limit = json.loads((tiny_model / "motion_adapter" / "config.json").read_text())["motion_max_seq_length"]
    shot = make_shot(tmp_path / "long", frames=limit + 8, moving=False, model={"window": limit + 8, "overlap": 0})
    run = generate(shot, _adapter_config_only(tiny_model, tmp_path / "config-only"), "--weights", "tiny")
    assert run.returncode == 1
    (error,) = run.of_type("error")
    assert error["code"] == "window_too_long", "refused from the config, before any weights are loaded"
    assert "[model] window" in error["message"] and f"at most {limit}" in error["message"]
    assert f"[model] window to at most {limit}" in error["hint"]


def test_a_window_longer_than_the_training_clips_is_warned_about(tmp_path, tiny_model):
    shot = make_shot(tmp_path / "long", frames=20, moving=False, model={"window": 20, "overlap": 0})
    run = generate(shot, _adapter_config_only(tiny_model, tmp_path / "config-only"), "--weights", "tiny")
    codes = [w["code"] for w in run.of_type("warning")]
    assert "window_above_training_length" in codes
    (warning,) = [w for w in run.of_type("warning") if w["code"] == "window_above_training_length"]
    assert "16" in warning["message"]
    assert run.of_type("error")[0]["code"] == "missing_weights", "the warning came before loading was tried"


@pytest.mark.parametrize("value", [0, 65])
def test_decode_chunk_size_out_of_range_is_refused(tmp_path, value):
    shot = make_shot(tmp_path / "shot", frames=2, model={"decode_chunk_size": value})
    run = run_backend("validate", str(shot))
    assert run.returncode == 1
    (error,) = run.of_type("error")
    assert error["code"] == "invalid_shot" and "decode_chunk_size" in error["message"]


@pytest.fixture(scope="module")
def tiny_pipeline(tiny_model):
    from inference import models

    return models.load_pipeline(models.tiny_spec(tiny_model, default_controls()), "cpu")


def _latents(frames: int = 7):
    import torch

    return torch.randn((1, 4, frames, 10, 16), generator=torch.Generator("cpu").manual_seed(0))


def test_the_vae_decodes_in_chunks_of_the_preset_size_without_changing_the_frames(tiny_pipeline):
    from inference import windows
    from inference.families import animatediff_controlnet

    batches = []
    hook = tiny_pipeline.vae.decoder.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    window = windows.Window(0, 0, 7)
    try:
        chunked = animatediff_controlnet.decode(tiny_pipeline, _latents(), 3, window, list(range(1, 8)))
        assert batches == [3, 3, 1]
        whole = animatediff_controlnet.decode(tiny_pipeline, _latents(), 16, window, list(range(1, 8)))
        single = animatediff_controlnet.decode(tiny_pipeline, _latents(), 1, window, list(range(1, 8)))
    finally:
        hook.remove()
    assert chunked.shape == (7, 80, 128, 3) and chunked.dtype == np.uint8, "as the PNGs hold them"
    # The VAE's float results differ by ~1e-7 between batch sizes (CPU kernels are picked by batch size),
    # which can flip a value sitting on a rounding boundary by one level: within 1/255, not bit for bit.
    for other in (single, chunked):
        assert np.abs(other.astype(int) - whole.astype(int)).max() <= 1


def test_decode_holds_no_float_video_of_the_whole_window_and_gives_the_pngs_of_diffusers_decode(tiny_pipeline):
    """Each chunk is decoded and post-processed on its own and kept as 8 bits (a 64-frame window at
    512x320 held three float copies of itself, 400 MiB); the values are those of diffusers' decode of the
    whole window with the same chunk size, bit for bit."""
    import torch

    from inference import windows
    from inference.families import animatediff_controlnet

    calls = []
    decode_latents = tiny_pipeline.decode_latents
    tiny_pipeline.decode_latents = lambda latents, chunk: calls.append(latents.shape[2]) or decode_latents(latents, chunk)
    try:
        ours = animatediff_controlnet.decode(tiny_pipeline, _latents(), 3, windows.Window(0, 0, 7), list(range(1, 8)))
    finally:
        del tiny_pipeline.decode_latents
    assert calls == [3, 3, 1], "one chunk of frames at a time"
    with torch.no_grad():
        whole = tiny_pipeline.video_processor.postprocess_video(tiny_pipeline.decode_latents(_latents(), 3),
                                                                output_type="np")[0]
    assert ours.dtype == np.uint8 and np.array_equal(ours, np.round(np.clip(whole, 0, 1) * 255).astype(np.uint8))


def test_an_fp16_vae_that_asks_for_upcasting_decodes_in_fp32(tiny_model):
    import torch

    from inference import models, windows
    from inference.families import animatediff_controlnet

    pipe = models.load_pipeline(models.tiny_spec(tiny_model, default_controls()), "cpu")
    reference = animatediff_controlnet.decode(pipe, _latents(2), 8, windows.Window(0, 0, 2), [1, 2])
    pipe.vae.to(torch.float16)
    assert pipe.vae.config.force_upcast
    animatediff_controlnet._upcast_vae(pipe)
    assert pipe.vae.dtype == torch.float32
    upcast = animatediff_controlnet.decode(pipe, _latents(2).half(), 8, windows.Window(0, 0, 2), [1, 2])
    # only the fp16 rounding of the latents (2e-3 in [0, 1] before the 8 bits)
    assert np.abs(upcast.astype(int) - reference.astype(int)).max() <= 1
