"""The upscale stage ([upscale], inference/upscale.py): frames delivered at exactly the shot's resolution,
through the real StableDiffusionUpscalePipeline on the tiny random-weight upscaler, resumable per frame."""

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import OpenEXR
import pytest
from PIL import Image

from conftest import REPO, make_shot, run_backend

# 32x24 generated -> x4 = 128x96 -> exactly 126x94 (an even size that no x4 pass reaches by itself).
GENERATED = {"width": 32, "height": 24, "window": 2, "overlap": 0}
DELIVERED = (126, 94)


def set_upscale(shot: Path, **table) -> None:
    data = json.loads((shot / "shot.json").read_text())
    data["preset"]["upscale"] = table
    (shot / "shot.json").write_text(json.dumps(data))


def png_bit_depth(path: Path) -> int:
    return (path.read_bytes())[24]  # IHDR's bit depth: 8-byte signature, 8-byte chunk header, width, height


@pytest.fixture(scope="module")
def diffused(tmp_path_factory, tiny_model):
    shot = make_shot(tmp_path_factory.mktemp("up") / "shot", frames=2, size=DELIVERED, model=GENERATED)
    set_upscale(shot, method="diffusion", steps=2, format="png16")
    run = run_backend("generate", str(shot), "--tiny-model", str(tiny_model))
    assert run.returncode == 0, run.stderr
    return shot, run


def test_the_diffusion_upscaler_delivers_exactly_the_shot_resolution(diffused):
    shot, run = diffused
    (result,) = run.of_type("result")
    assert {"frames/0001.png", "frames_png16/0002.png"} <= set(result["outputs"])
    for frame in (1, 2):
        assert Image.open(shot / "blended" / f"{frame:04d}.png").size == (32, 24), "blended at the generation size"
        eight = Image.open(shot / "frames" / f"{frame:04d}.png")
        assert eight.size == DELIVERED and eight.mode == "RGB" and eight.text["Disclaimer"] == "AI-generated"
        sixteen = cv2.imread(str(shot / "frames_png16" / f"{frame:04d}.png"), cv2.IMREAD_UNCHANGED)
        assert sixteen.dtype == np.uint16 and sixteen.shape == (DELIVERED[1], DELIVERED[0], 3)
        # The 8-bit frame is the same picture as the 16-bit one, rounded.
        assert np.abs(np.asarray(eight, np.float64) - sixteen[..., ::-1] / 257.0).max() <= 0.5 + 1e-9
    assert [e["stage"] for e in run.of_type("progress")].count("upscale_step") == 2 * 2, "two steps per frame"
    # The x4 pass really ran: its frame is not the blended frame resized.
    blended = Image.open(shot / "blended" / "0001.png").resize(DELIVERED, Image.Resampling.LANCZOS)
    difference = np.abs(np.asarray(blended, np.float64) - np.asarray(Image.open(shot / "frames" / "0001.png"))).mean()
    assert difference > 5.0, f"the diffusion upscaler changed nothing (mean difference {difference:.2f})"

    provenance = json.loads((shot / "provenance.json").read_text())
    assert provenance["resolution"] == {"generated": [32, 24], "delivered": list(DELIVERED)}
    upscale = provenance["upscale"]
    assert upscale["method"] == "diffusion" and upscale["steps"] == 2 and upscale["format"] == "png16"
    assert upscale["model"] == "stabilityai/stable-diffusion-x4-upscaler" and len(upscale["revision"]) == 40
    assert upscale["chain"] == ["diffusion x4: 32x24 -> 128x96", "lanczos: 128x96 -> 126x94"]
    assert upscale["used"]["smoke_test"] is True and len(upscale["used"]["tiny_upscaler_sha256"]) == 64


def test_a_cancelled_upscale_keeps_its_finished_frames_and_a_rerun_redoes_only_the_rest(diffused, tmp_path, tiny_model,
                                                                                        monkeypatch):
    from inference.protocol import EXIT_CANCELLED

    shot = tmp_path / "shot"
    shutil.copytree(diffused[0], shot)
    delivered = {f: (shot / "frames" / f"{f:04d}.png").read_bytes() for f in (1, 2)}
    for folder in ("frames", "frames_png16", "upscale"):
        shutil.rmtree(shot / folder)  # blended, not delivered yet
    proc = subprocess.Popen([sys.executable, "-m", "inference", "upscale", str(shot), "--tiny-model", str(tiny_model)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["type"] == "progress" and events[-1]["stage"] == "upscale" and "delivered" in events[-1]["message"]:
            (shot / "cancel.request").touch()  # after frame 1, before frame 2's first step ends
    assert proc.wait(timeout=120) == EXIT_CANCELLED, events[-1]
    (cancelled,) = [e for e in events if e["type"] == "cancelled"]
    assert cancelled["kept"] == ["upscale/0001.json"] and not (shot / "frames" / "0002.png").exists()

    # The rerun in this process (as the `upscale` command runs it), to spare a second torch start.
    from inference import protocol, upscale
    from inference import shot as shot_module

    monkeypatch.setattr(protocol, "_stream", io.StringIO())  # the events, as the command would print them
    loaded = shot_module.load(shot)
    written = upscale.run(loaded, upscale.resolve(loaded, "tiny", tiny_model), "cpu")
    events = [json.loads(line) for line in protocol._stream.getvalue().splitlines()]
    messages = [e["message"] for e in events if e["stage"] == "upscale"]
    assert messages == ["frame 1 unchanged, skipped", "frame 2 delivered at 126x94"]
    assert written == [shot / "frames" / "0002.png", shot / "frames_png16" / "0002.png"]
    # The shot seed drives the upscaler's noise: frames made in separate runs are the generate run's, byte for byte.
    assert {f: (shot / "frames" / f"{f:04d}.png").read_bytes() for f in (1, 2)} == delivered


@pytest.fixture
def blended_shot(tmp_path):
    """A shot whose frames are blended (a smooth gradient at the generation size), nothing delivered."""
    from inference import files

    shot = make_shot(tmp_path / "shot", frames=1, size=(96, 72), model={"width": 64, "height": 48})
    ramp = np.linspace(0.0, 1.0, 64)[None, :, None] * np.linspace(0.2, 1.0, 48)[:, None, None]
    pixels = np.round(np.repeat(ramp, 3, axis=2) * [255, 200, 100]).astype(np.uint8)
    files.write_png(shot / "blended" / "0001.png", Image.fromarray(pixels), {"Disclaimer": "AI-generated"})
    return shot


def test_each_format_is_written_readable_with_its_bit_depth(blended_shot):
    from inference import frame_formats, upscale
    from inference import shot as shot_module

    written = {}
    for fmt in ("png8", "png16", "exr_half"):
        set_upscale(blended_shot, method="lanczos", format=fmt)
        written[fmt] = upscale.run(shot_module.load(blended_shot))
    frames = blended_shot / "frames" / "0001.png"
    assert written["png8"] == [frames], "png8: frames/ alone"
    assert png_bit_depth(frames) == 8 and Image.open(frames).size == (96, 72)
    sixteen_path = blended_shot / "frames_png16" / "0001.png"
    assert written["png16"] == [frames, sixteen_path]
    assert png_bit_depth(sixteen_path) == 16
    sixteen = cv2.imread(str(sixteen_path), cv2.IMREAD_UNCHANGED)[..., ::-1] / 65535.0
    assert sixteen.shape == (72, 96, 3) and len(np.unique(sixteen)) > 256, "more than 8 bits of levels"

    exr_path = blended_shot / "frames_exr_half" / "0001.exr"
    assert written["exr_half"] == [frames, exr_path]
    (part,) = OpenEXR.File(str(exr_path), separate_channels=True).parts
    channels = {name: channel.pixels for name, channel in part.channels.items()}
    assert sorted(channels) == ["B", "G", "R"] and all(c.dtype == np.float16 for c in channels.values())
    linear = np.stack([channels[c] for c in "RGB"], axis=-1).astype(np.float64)
    # Linear light (IEC 61966-2-1) of the same frame: half floats hold it to about 1e-3.
    assert np.abs(linear - frame_formats.srgb_to_linear(sixteen)).max() < 2e-3
    assert "AI-generated" in part.header["comments"]


def test_lanczos_png8_is_the_resize_rubble_always_did(blended_shot):
    from inference import upscale
    from inference import shot as shot_module

    upscale.run(shot_module.load(blended_shot))
    expected = Image.open(blended_shot / "blended" / "0001.png").resize((96, 72), Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(Image.open(blended_shot / "frames" / "0001.png")), np.asarray(expected))


def test_upscaling_before_blending_says_what_to_run(blended_shot):
    from inference import upscale
    from inference import shot as shot_module
    from inference.protocol import BackendError

    (blended_shot / "blended" / "0001.png").unlink()
    with pytest.raises(BackendError) as error:
        upscale.run(shot_module.load(blended_shot))
    assert error.value.code == "frames_not_blended" and "python -m inference generate" in error.value.hint


def test_the_tiny_upscaler_has_the_hub_layout_the_fetch_lists_describe(diffused, tiny_model):
    from inference import fetch, tiny_upscaler, upscale

    source = upscale.tiny_spec(tiny_upscaler.location(tiny_model)).source(upscale.ROLE)
    present = sorted(str(p.relative_to(source.directory)) for p in source.directory.rglob("*")
                     if p.is_file() and p.name != tiny_upscaler.MARKER)
    selected, unmet = fetch.select(source, present, "full")
    assert not unmet and sorted(selected) == present
    index = json.loads((source.directory / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionUpscalePipeline"
    assert {name for name, value in index.items() if isinstance(value, list) and value[0] is not None} == {
        "unet", "vae", "text_encoder", "tokenizer", "scheduler", "low_res_scheduler"}


def test_fetch_and_doctor_know_the_upscaler_when_the_preset_runs_it(tmp_path):
    upscaler = "stabilityai/stable-diffusion-x4-upscaler@572c99286543a273bfd17fac263db5a77be12c4c"
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    plain = make_shot(tmp_path / "plain", frames=1)
    run = run_backend("fetch", str(plain), env=env)
    assert run.of_type("error")[0]["code"] == "offline" and upscaler not in run.of_type("error")[0]["message"], (
        "a LANCZOS preset never downloads the upscaler")

    diffusion = make_shot(tmp_path / "diffusion", frames=1)
    set_upscale(diffusion, method="diffusion")
    run = run_backend("fetch", str(diffusion), env=env)
    assert run.of_type("error")[0]["code"] == "offline" and upscaler in run.of_type("error")[0]["message"]
    run = run_backend("doctor", "--shot", str(diffusion), "--tiny-model", str(tmp_path / "none"), env=env)
    assert run.returncode == 0, run.stderr
    (report,) = run.of_type("result")
    assert upscaler in report["real_weights"]["models"]
    assert f"{upscaler}: low_res_scheduler/scheduler_config.json" in report["real_weights"]["missing"]
