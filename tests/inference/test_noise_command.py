"""`noise` and `generate` with [noise] mode = "warped", end to end with the tiny model in real processes."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_shot, run_backend
from inference import blend, contact_sheet, models, noise_warp, temporal
from inference.families import animatediff_controlnet
from inference import shot as shot_module


def set_noise(shot: Path, **noise) -> None:
    path = shot / "shot.json"
    data = json.loads(path.read_text())
    data["preset"]["noise"] = {**data["preset"].get("noise", {}), **noise}
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def warped(tmp_path_factory, tiny_model):
    """A 4-frame shot whose box slides right (1 px per frame at 64x48), noise warped along it."""
    shot = make_shot(tmp_path_factory.mktemp("noise") / "shot")
    set_noise(shot, mode="warped")
    written = run_backend("noise", str(shot))
    assert written.returncode == 0, written.stderr
    generated = run_backend("generate", str(shot), "--tiny-model", str(tiny_model))
    assert generated.returncode == 0, generated.stderr
    return shot, written


def test_the_noise_file_holds_exactly_the_latents_each_window_starts_from(warped):
    shot, written = warped
    (result,) = written.of_type("result")
    assert result["outputs"] == ["noise/latents.npy"] and result["mode"] == "warped"
    latents = np.load(shot / "noise" / "latents.npy")
    assert latents.dtype == np.float32 and latents.shape == (4, 4, 80 // 8, 128 // 8), "(C, F, h, w)"
    for index in range(3):  # windows (1-2), (2-3), (3-4)
        record = json.loads((shot / "windows" / f"{index:03d}" / "record.json").read_text())
        assert record["latents_sha256"] == noise_warp.latents_sha256(latents[:, index : index + 2]), index

    # Warped, not fresh: frame 0 is the shot seed's fresh noise; the still background carries frame 0's
    # noise over bit for bit, the sliding box does not.
    fresh, _ = noise_warp.fresh_noise(1234, latents.shape)
    assert np.array_equal(latents[:, 0], fresh[:, 0])
    carried = (latents[:, 1] == latents[:, 0]).all(axis=0)
    assert 0.5 < carried.mean() < 1.0, carried.mean()
    plain = shot_module.load(shot)
    set_noise(shot, mode="fresh")
    try:
        assert np.array_equal(noise_warp.shot_latents(shot_module.load(shot)), fresh), "fresh = the noise before [noise]"
        assert blend.unfinished(shot_module.load(shot))[1] == [0, 1, 2], "another noise mode makes every window stale"
    finally:
        set_noise(shot, mode=plain.noise.mode)


def test_the_generation_equals_a_plain_diffusers_call_given_the_noise_file(warped, tiny_model):
    import torch

    shot_dir, _ = warped
    shot = shot_module.load(shot_dir)
    latents = np.load(shot_dir / "noise" / "latents.npy")
    pipe = models.load_pipeline(models.tiny_spec(tiny_model, shot.model.controls), "cpu")
    video = pipe(
        prompt=shot.look.prompt,
        negative_prompt=shot.look.negative_prompt,
        num_frames=2,
        width=shot.model.width,
        height=shot.model.height,
        num_inference_steps=shot.look.steps,
        guidance_scale=shot.look.guidance_scale,
        **animatediff_controlnet.control_arguments(shot, [2, 3]),
        latents=torch.from_numpy(latents[:, 1:3])[None],
        decode_chunk_size=shot.model.decode_chunk_size,
        output_type="np",
    ).frames[0]
    expected = np.round(np.clip(video, 0, 1) * 255).astype(np.uint8)
    made = np.stack([np.asarray(Image.open(shot_dir / "windows" / "001" / f"{f:04d}.png")) for f in (2, 3)])
    assert np.array_equal(made, expected)


def test_generate_records_the_noise_and_the_temporal_warp_error(warped):
    shot_dir, _ = warped
    shot = shot_module.load(shot_dir)
    provenance = json.loads((shot_dir / "provenance.json").read_text())
    assert provenance["noise"]["mode"] == "warped" and "Chang et al." in provenance["noise"]["method"]
    stability = provenance["temporal_warp_error"]
    assert set(stability["roles"]) == {"building", "ground"} and stability["frames"] == [1, 4]
    assert stability == json.loads(json.dumps(temporal.measure(shot))), "the recorded value is today's measurement"
    assert 0.0 < stability["all"] < 1.0

    sheet = np.asarray(Image.open(shot_dir / "contact_sheet.png").convert("L"))
    rows = len(contact_sheet.sampled_frames(shot))
    cell_height = round(48 * contact_sheet.CELL_WIDTH / 64)
    body = contact_sheet.BANNER_HEIGHT + contact_sheet.LABEL_HEIGHT + rows * (cell_height + contact_sheet.LABEL_HEIGHT)
    assert sheet.shape[0] == body + contact_sheet.LABEL_HEIGHT, "one line added under the frames"
    assert (sheet[body:] > 128).any(), "the line carries text"


def test_a_motion_lora_that_is_not_on_this_machine_is_refused_before_loading(tmp_path, tiny_model):
    shot = make_shot(tmp_path / "lora", frames=2)
    set_noise(shot, motion_lora=str(tmp_path / "absent.safetensors"))
    run = run_backend("generate", str(shot), "--tiny-model", str(tiny_model))
    (error,) = run.of_type("error")
    assert run.returncode != 0 and error["code"] == "missing_motion_lora"
    assert "absent.safetensors" in error["message"] and "motion_lora" in error["hint"]
    assert not (shot / "windows").exists()


def test_warped_noise_without_flow_says_how_to_make_it(tmp_path):
    from inference.protocol import BackendError

    shot = make_shot(tmp_path / "noflow", frames=2)
    set_noise(shot, mode="warped")
    with pytest.raises(BackendError) as raised:
        noise_warp.shot_latents(shot_module.load(shot))
    assert raised.value.code == "missing_flow" and "python -m inference control" in raised.value.hint


def test_a_bad_noise_table_is_refused(tmp_path):
    shot = make_shot(tmp_path / "bad", frames=2)
    set_noise(shot, strength=1.5)
    run = run_backend("validate", str(shot))
    (error,) = run.of_type("error")
    assert error["code"] == "invalid_shot" and "noise strength" in error["message"]
