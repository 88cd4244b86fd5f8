"""The one-frame look preview (issue 22 item 1): the real StableDiffusionControlNetPipeline on the
tiny weights, in a real subprocess and in-process against a plain diffusers call."""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import make_shot, run_backend

SIZE = (128, 80)  # the generation size of make_shot's preset: the still is written without a resize


def preview(shot, tiny_model, frame, *extra):
    return run_backend("preview", str(shot), "--frame", str(frame), "--tiny-model", str(tiny_model), *extra)


@pytest.fixture(scope="module")
def shot_dir(tmp_path_factory):
    return make_shot(tmp_path_factory.mktemp("preview") / "shot", frames=3, size=SIZE)


@pytest.fixture(scope="module")
def first(shot_dir, tiny_model):
    run = preview(shot_dir, tiny_model, 2)
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="module")
def image_pipe(shot_dir, tiny_model, first):  # after `first`: the control maps are derived
    from inference import models
    from inference import shot as shot_module

    shot = shot_module.load(shot_dir)
    return models.load_image_pipeline(models.tiny_spec(tiny_model, shot.model.controls), "cpu", "float32", shot.memory)


def test_preview_writes_a_still_and_provenance_of_kind_preview(shot_dir, first):
    (result,) = first.of_type("result")
    assert result["reused"] is False and result["frame"] == 2 and result["smoke_test"] is True
    folder = shot_dir / "previews" / result["id"]
    assert result["outputs"] == [f"previews/{result['id']}/frame_0002.png", f"previews/{result['id']}/provenance.json"]
    assert sorted(p.name for p in folder.iterdir()) == ["frame_0002.png", "provenance.json"], "no temporary files left"
    assert not (shot_dir / "frames").exists(), "a preview never writes final frames"
    image = Image.open(folder / "frame_0002.png")
    assert image.size == SIZE and image.text["Disclaimer"] == "AI-generated" and image.text["Kind"] == "preview"
    assert np.asarray(image, dtype=np.float64).std() > 1.0, "the still is not blank"
    assert [e["stage"] for e in first.of_type("progress") if e["stage"] == "preview"] == ["preview", "preview"], (
        "one progress event per step (2 steps)"
    )

    record = json.loads((folder / "provenance.json").read_text())
    assert record["kind"] == "preview" and record["frame"] == 2 and record["disclosure"] == "AI-generated"
    assert record["pipeline"] == "StableDiffusionControlNetPipeline" and "motion module" in record["differs_from_shot"]
    assert record["seed"] == 1234 and record["look"]["strength"] == 1.0 and record["look"]["steps"] == 2
    assert record["look"]["prompt"] == result["look"]["prompt"]
    assert [c["kind"] for c in record["controls"]] == ["depth", "normal"]
    assert len(record["model"]["used"]["tiny_model_sha256"]) == 64 and record["inputs_sha256"].startswith(result["id"])


def test_the_same_preview_is_reused(shot_dir, tiny_model, first):
    (made,) = first.of_type("result")
    still = shot_dir / "previews" / made["id"] / "frame_0002.png"
    written = still.stat().st_mtime_ns
    run = preview(shot_dir, tiny_model, 2)
    assert run.returncode == 0, run.stderr
    (again,) = run.of_type("result")
    assert again["reused"] is True and again["id"] == made["id"] and still.stat().st_mtime_ns == written


def test_a_frame_outside_the_shot_is_refused(shot_dir, tiny_model):
    run = preview(shot_dir, tiny_model, 4)
    assert run.returncode == 1
    (error,) = run.of_type("error")
    assert error["code"] == "bad_frame" and "1-3" in error["message"] and "1 to 3" in error["hint"]


def test_the_still_is_diffusers_image_controlnet_pipeline_on_the_frames_slice_of_the_shot_latents(
        shot_dir, tiny_model, first, image_pipe):
    """What the preview wrote equals a plain StableDiffusionControlNetPipeline call with the frame's
    control maps and the frame's slice of the shot's initial latents (noise_warp.shot_latents)."""
    import torch
    from diffusers import MultiControlNetModel, StableDiffusionControlNetPipeline, UNet2DConditionModel

    from inference import noise_warp
    from inference import shot as shot_module
    from inference.families.animatediff_controlnet import conditioning

    assert type(image_pipe) is StableDiffusionControlNetPipeline
    assert type(image_pipe.unet) is UNet2DConditionModel and isinstance(image_pipe.controlnet, MultiControlNetModel)
    shot = shot_module.load(shot_dir)
    latents = torch.from_numpy(noise_warp.shot_latents(shot))[None]
    (made,) = first.of_type("result")
    written = np.asarray(Image.open(shot_dir / "previews" / made["id"] / "frame_0002.png"), dtype=np.int16)

    def still(offset):
        pixels = image_pipe(
            prompt=shot.look.prompt, negative_prompt=shot.look.negative_prompt,
            image=[np.stack(conditioning(shot, c.kind, [2])) for c in shot.model.controls],
            controlnet_conditioning_scale=[c.weight for c in shot.model.controls],
            width=SIZE[0], height=SIZE[1], num_inference_steps=shot.look.steps, guidance_scale=shot.look.guidance_scale,
            latents=latents[:, :, offset], output_type="np",
        ).images[0]
        return np.round(pixels * 255.0).astype(np.int16)

    assert np.abs(written - still(1)).max() <= 1, "frame 2 is offset 1 of the shot latents"
    assert np.abs(written - still(0)).mean() > 1.0, "another frame's noise gives another still"


def test_a_changed_look_makes_a_new_preview_and_cancel_writes_nothing(shot_dir, tiny_model, first, image_pipe):
    import dataclasses

    from inference import cancel, models
    from inference import preview as preview_module
    from inference import shot as shot_module

    shot = shot_module.load(shot_dir)
    changed = dataclasses.replace(shot, look=dataclasses.replace(shot.look, prompt="a brick tower, dusk"))
    spec = models.tiny_spec(tiny_model, shot.model.controls)
    flag = cancel.CancelFlag(shot_dir)
    made = preview_module.run(changed, 2, spec, "cpu", flag, pipe=image_pipe)
    (old,) = first.of_type("result")
    assert made["reused"] is False and made["id"] != old["id"]
    assert sorted(p.name for p in (shot_dir / "previews").iterdir()) == sorted([old["id"], made["id"]]), (
        "the earlier preview is kept beside the new one"
    )
    assert json.loads((shot_dir / "previews" / made["id"] / "provenance.json").read_text())["look"]["prompt"] == (
        "a brick tower, dusk")

    (shot_dir / cancel.REQUEST_FILE).touch()  # as the add-on's Esc does
    other = dataclasses.replace(shot, look=dataclasses.replace(shot.look, prompt="a steel frame, night"))
    with pytest.raises(cancel.Cancelled):
        preview_module.run(other, 3, spec, "cpu", flag, pipe=image_pipe)
    (shot_dir / cancel.REQUEST_FILE).unlink()
    assert len(list((shot_dir / "previews").iterdir())) == 2, "a cancelled preview leaves nothing behind"
