"""One-frame look preview (`python -m inference preview SHOT --frame N`, issue 22 item 1).

One still through diffusers' image ControlNet pipeline (StableDiffusionControlNetPipeline) with
what the shot would use for that frame: the base model, the [[controls]] ControlNets with their
weights and guidance ranges, the frame's control maps (the conditioning generate feeds), the
look, and as initial latents that frame's slice of the shot's latents (noise_warp.shot_latents,
the same seed and long-shot noise), denoised along the shot's DDIM schedule. What differs from
the frame in the shot: no motion module (the 2D UNet alone), so nothing of the neighbouring
frames reaches it; it predicts the look (palette, materials, composition), not the motion.

Written to previews/<id>/frame_NNNN.png and previews/<id>/provenance.json ("kind": "preview"),
atomically, provenance last; <id> is a digest of everything the still depends on, so asking for
the same frame with the same look again reuses it, and a changed look makes a new one.
"""

import json
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import numpy as np
from PIL import Image

from . import __version__, control, files, memory, models, noise_warp, pipeline_cache, protocol, provenance, windows
from .cancel import CancelFlag
from .families import animatediff_controlnet as family  # the window inputs, conditioning and decode checks it shares
from .models import ModelSpec
from .protocol import BackendError
from .shot import Shot

KIND = "preview"
FOLDER = "previews"
ID_LENGTH = 16  # hex digits of the inputs' sha256 that name the folder
PIPELINE = "StableDiffusionControlNetPipeline"
# The families whose still predicts a frame: an SD1.5 base with image ControlNets.
FAMILIES = ("animatediff-controlnet",)
DIFFERS = ("one still through the image ControlNet pipeline: no motion module, so the neighbouring "
           "frames do not shape it; it predicts the shot's look, not its motion")


def strength(shot: Shot) -> float:
    """[look] strength (video-to-video, feat/v2v); 1.0 (text-to-video) where the shot has none."""
    return float(getattr(shot.look, "strength", 1.0))


def look(shot: Shot) -> dict:
    """The look a preview records (and the add-on's history restores): [look] with its strength."""
    return {**asdict(shot.look), "strength": strength(shot)}


def check(shot: Shot, frame: int) -> None:
    """Refuse what cannot be previewed, before any model loads."""
    if shot.model.family not in FAMILIES:
        raise BackendError(
            "preview_unsupported",
            f"The look preview runs the image ControlNet pipeline of an SD1.5 base model; model family "
            f"{shot.model.family!r} has none.",
            f"Preview with a preset of family {', '.join(map(repr, FAMILIES))}, or generate the shot.",
        )
    if frame not in shot.frames:
        raise BackendError(
            "bad_frame",
            f"Frame {frame} is outside the shot (frames {shot.frame_start}-{shot.frame_end}).",
            f"Pick a frame from {shot.frame_start} to {shot.frame_end}.",
        )


def directory(shot: Shot, preview_id: str) -> Path:
    return shot.directory / FOLDER / preview_id


def frame_path(shot: Shot, preview_id: str, frame: int) -> Path:
    return directory(shot, preview_id) / f"frame_{frame:04d}.png"


def inputs(shot: Shot, frame: int, identity: dict, runtime: dict) -> dict:
    """Everything the still depends on: a window's inputs (inference/families) for this one frame,
    with the look's strength and the pipeline that made it."""
    offset = frame - shot.frame_start
    hashes = {frame: {c.kind: _sha256_or_none(control.map_path(shot, c.kind, frame)) for c in shot.model.controls}}
    record = family.window_inputs(shot, identity, runtime, hashes, windows.Window(0, offset, offset + 1))
    record["look"] = {**record["look"], "strength": strength(shot)}
    return {"kind": KIND, "pipeline": PIPELINE, **record}


def _sha256_or_none(path: Path) -> str | None:
    return files.sha256_file(path) if path.is_file() else None


def existing(shot: Shot, preview_id: str, frame: int, digest: str) -> bool:
    """True when this preview was made already: its provenance (written last) names these inputs."""
    try:
        saved = json.loads((directory(shot, preview_id) / "provenance.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return saved.get("inputs_sha256") == digest and frame_path(shot, preview_id, frame).is_file()


def run(shot: Shot, frame: int, spec: ModelSpec, device: str, cancel: CancelFlag, pipe=None) -> dict:
    """Make (or reuse) the preview of `frame`; returns its id, paths and whether it was reused.

    `pipe`: an image pipeline already loaded with models.load_image_pipeline (tests, bench/, a warm
    backend); loaded here otherwise.
    """
    check(shot, frame)
    if strength(shot) < 1.0:
        protocol.warning(
            "preview_text_to_image",
            f"[look] strength is {strength(shot)}: the shot starts from its clay frames, the preview from noise "
            "(text-to-image), so it predicts the look less closely.",
        )
    # The maps of this frame (normalised shot-wide); warped noise follows the flow of every frame before it.
    control.derive(shot, shot.frames if shot.noise.mode == "warped" else [frame])
    description = models.describe(spec)
    dtype = memory.dtype_name(device, shot.memory)
    record = inputs(shot, frame, family.model_identity(description), family.runtime(device, dtype))
    digest = files.sha256_json(record)
    preview_id = digest[:ID_LENGTH]
    if existing(shot, preview_id, frame, digest):
        protocol.progress(KIND, 1, 1, f"frame {frame} with this look was previewed already, reused")
        return {"id": preview_id, "frame": frame_path(shot, preview_id, frame), "reused": True, "look": look(shot)}

    import torch

    started = time.perf_counter()
    if pipe is None:
        try:
            # A warm backend keeps it (inference/pipeline_cache.py): the next preview starts at once.
            key = {"pipeline": "preview", "model": record["model"], "controls": [c.kind for c in shot.model.controls],
                   "device": device, "dtype": dtype, "memory": asdict(shot.memory)}
            pipe = pipeline_cache.get(key, lambda: models.load_image_pipeline(spec, device, dtype, shot.memory))
        except torch.OutOfMemoryError as exc:
            raise memory.out_of_memory(exc, shot.memory, "windows", "while loading the preview model") from exc
    family._upcast_vae(pipe)
    load_seconds = time.perf_counter() - started

    started = time.perf_counter()
    offset = frame - shot.frame_start
    latents = torch.from_numpy(np.ascontiguousarray(noise_warp.shot_latents(shot)[:, offset]))[None]
    steps = shot.look.steps

    def on_step(pipeline, step, timestep, tensors):
        cancel.check()
        protocol.progress(KIND, step + 1, steps, f"frame {frame} step {step + 1}/{steps}")
        return tensors

    arguments = family.control_arguments(shot, [frame])
    # One (1, H, W, 3) image per ControlNet: diffusers counts a bare (H, W, 3) array as H images.
    maps = [frames[0][None] for frames in arguments.pop("conditioning_frames")]
    try:
        output = pipe(
            prompt=shot.look.prompt,
            negative_prompt=shot.look.negative_prompt,
            image=maps,
            width=shot.model.width,
            height=shot.model.height,
            num_inference_steps=steps,
            guidance_scale=shot.look.guidance_scale,
            latents=latents.to(device=pipe._execution_device, dtype=pipe.unet.dtype),
            output_type="latent",  # decoded below, upcast, checked before anything is written
            callback_on_step_end=on_step,
            **arguments,
        )
        pixels = _decode(pipe, output.images, frame)
    except torch.OutOfMemoryError as exc:
        raise memory.out_of_memory(exc, shot.memory, "windows", f"in the preview of frame {frame}") from exc
    seconds = time.perf_counter() - started

    image = Image.fromarray(np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8))
    if image.size != shot.resolution:  # as blend.py: frames come back at the shot's resolution
        image = image.resize(shot.resolution, Image.Resampling.LANCZOS)
    text = {"Disclaimer": provenance.DISCLOSURE, "Software": f"Rubble {__version__}", "Kind": KIND}
    if description["smoke_test"]:
        text["Warning"] = models.SMOKE_TEST
    path = frame_path(shot, preview_id, frame)
    files.write_png(path, image, text)
    files.write_json(directory(shot, preview_id) / "provenance.json",
                     _provenance(shot, frame, description, record, digest, device, seconds, load_seconds))
    return {"id": preview_id, "frame": path, "reused": False, "look": look(shot)}


def _decode(pipe, latents, frame: int) -> np.ndarray:
    """Latents (1, C, h, w) -> (H, W, 3) in [0, 1]; NaN/inf pixels are an error before anything is written."""
    import torch

    with torch.no_grad():
        image = pipe.vae.decode(latents.to(pipe.vae.dtype) / pipe.vae.config.scaling_factor, return_dict=False)[0]
    if not torch.isfinite(image).all():
        raise BackendError(
            "non_finite_output",
            f"The preview of frame {frame} decoded to NaN/inf pixels (UNet {str(pipe.unet.dtype).removeprefix('torch.')}, "
            f"VAE {str(pipe.vae.dtype).removeprefix('torch.')}); nothing was saved.",
            "An fp16 VAE overflows: decode in fp32 (force_upcast: true in the VAE's config.json, or --device cpu); "
            "a very high [look] guidance_scale can also blow up the latents, so lower it.",
        )
    return pipe.image_processor.postprocess(image.float(), output_type="np")[0]


def _provenance(shot: Shot, frame: int, description: dict, record: dict, digest: str, device: str,
                seconds: float, load_seconds: float) -> dict:
    return {
        "schema": provenance.SCHEMA,
        "kind": KIND,
        "disclosure": provenance.DISCLOSURE,
        "smoke_test": description["smoke_test"],
        "weights": description["weights"],
        "frame": frame,
        "pipeline": PIPELINE,
        "differs_from_shot": DIFFERS,
        "look": look(shot),
        "seed": shot.seed,
        "model": {
            "family": shot.model.family,
            "base": shot.model.base,
            "base_revision": shot.model.base_revision,
            "width": shot.model.width,
            "height": shot.model.height,
            "used": description,
        },
        "controls": provenance.controls(shot, description),
        "noise": noise_warp.provenance(shot),
        "inputs_sha256": digest,
        "inputs": record,
        "device": device,
        "seconds": round(seconds, 3),
        "model_load_seconds": round(load_seconds, 3),
        "versions": {"rubble": __version__, **{n: metadata.version(n) for n in ("torch", "diffusers", "transformers")}},
    }
