"""The upscale stage: the blended frames (blended/, generation size) -> the delivered frames at
exactly [shot].resolution (frames/, plus frames_png16/ or frames_exr_half/), preset `[upscale]`.

"lanczos": one LANCZOS resize, what Rubble always did. "diffusion": diffusers'
StableDiffusionUpscalePipeline (x4, text-guided by the shot's prompt), then a LANCZOS resize to the
exact size; where the shot is no larger than the generated frames the x4 pass would only be thrown
away, so those frames are resized alone (provenance "upscale" "chain" says what ran).

Resumable per frame: each frame's record (upscale/NNNN.json, written after its files) holds the
hash of its inputs (the blended frame's bytes, the settings, the seed and prompt, the upscaler's
weights by content, device and library versions) and of each file written; a rerun skips a frame
whose inputs and files match, so a cancel keeps every finished frame.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from . import __version__, files, frame_formats, memory, models, protocol, regenerate, tiny_upscaler
from .upscale_settings import Upscale
from .protocol import BackendError

if TYPE_CHECKING:  # shot.py imports this module for its settings
    from .cancel import CancelFlag
    from .shot import Shot

SCALE = 4  # stabilityai/stable-diffusion-x4-upscaler: its VAE decodes 4x the frame it is given
RECORD_SCHEMA = "rubble.upscale/1"
ROLE = "upscaler"
# The x4 upscaler's repository: a Stable Diffusion pipeline folder plus the scheduler that noises
# the low-resolution frame (diffusers' StableDiffusionUpscalePipeline components).
FILES = (*models.BASE_FILES, (("low_res_scheduler/scheduler_config.json",),))
OPTIONAL = models.BASE_OPTIONAL


# -- where things are ---------------------------------------------------------------------------

def blended_path(shot: Shot, frame: int) -> Path:
    return shot.directory / "blended" / f"{frame:04d}.png"


def delivered_paths(shot: Shot, frame: int) -> dict[str, Path]:
    """format -> file of one frame: frames/ always (the sequencer, contact sheet and temporal
    measure read it), and the [upscale] format's compositing copy beside it."""
    paths = {"png8": shot.directory / "frames" / f"{frame:04d}.png"}
    if shot.upscale.format == "png16":
        paths["png16"] = shot.directory / "frames_png16" / f"{frame:04d}.png"
    elif shot.upscale.format == "exr_half":
        paths["exr_half"] = shot.directory / "frames_exr_half" / f"{frame:04d}.exr"
    return paths


def record_path(shot: Shot, frame: int) -> Path:
    return shot.directory / "upscale" / f"{frame:04d}.json"


# -- which weights ------------------------------------------------------------------------------

def real_spec(up: Upscale) -> models.ModelSpec:
    return models.ModelSpec(smoke_test=False, sources=(
        models.Source(ROLE, up.model, up.revision, FILES, OPTIONAL, ("[upscale] model", "[upscale] revision")),))


def fetch_sources(up: Upscale) -> tuple[models.Source, ...]:
    """The upscaler's repository for `fetch` and `doctor`: only when the preset runs it."""
    return real_spec(up).sources if up.method == "diffusion" else ()


def tiny_spec(location: Path) -> models.ModelSpec:
    return models.ModelSpec(smoke_test=True, sources=(models.Source(ROLE, str(location), None, FILES, OPTIONAL),))


def uses_diffusion(shot: Shot) -> bool:
    """The x4 pass runs when the preset asks for it and the shot is larger than the generated frames."""
    return shot.upscale.method == "diffusion" and (shot.resolution[0] > shot.model.width
                                                    or shot.resolution[1] > shot.model.height)


def resolve(shot: Shot, weights: str, tiny_model_dir: Path) -> models.ModelSpec | None:
    """The upscaler to load (None when no diffusion pass runs), chosen as [model] weights choose
    the generation model: real if on this machine, else the tiny one ("auto", loudly) or an error."""
    if not uses_diffusion(shot):
        return None
    if weights != "tiny":
        real = real_spec(shot.upscale)
        missing = models.missing_files(real)
        if not missing:
            return real
        if weights == "pretrained":
            raise BackendError(
                "missing_weights",
                f"The upscaler's weights are not on this machine; missing: {', '.join(missing)}.",
                models.download_hint(real) + ' Or set [upscale] method = "lanczos" (a plain resize).',
            )
        protocol.warning("random_weights", "The upscaler's real weights are not on this machine; upscaling with the "
                         "tiny RANDOM-WEIGHT upscaler (a smoke test, not a look). " + models.download_hint(real))
    location = tiny_upscaler.location(tiny_model_dir)
    if not tiny_upscaler.is_tiny_upscaler(location):
        print(f"Building the tiny upscaler in {location}", file=sys.stderr)
        tiny_upscaler.build(location)
    return tiny_spec(location)


def describe(spec: models.ModelSpec | None) -> dict | None:
    """The upscaler by content for records and provenance: commit + file hashes, or the tiny tree hash."""
    if spec is None:
        return None
    source = spec.source(ROLE)
    if spec.smoke_test:
        return {"smoke_test": True, "weights": models.SMOKE_TEST, "tiny_upscaler": str(source.directory),
                "tiny_upscaler_sha256": files.sha256_tree(source.directory)}
    used = models.describe(spec)["sources"][ROLE]
    return {"smoke_test": False, "weights": "pretrained", **used}


def _identity(description: dict) -> dict:
    """`describe` without paths: the same weights elsewhere are the same upscaler."""
    drop = ("tiny_upscaler", "id", "revision", "weights")
    return {k: v for k, v in description.items() if k not in drop}


def load_pipeline(spec: models.ModelSpec, device: str, dtype: str, switches: memory.Memory):
    """StableDiffusionUpscalePipeline from local files only, in `dtype`, with the [memory] switches."""
    import torch
    from diffusers import StableDiffusionUpscalePipeline

    source = spec.source(ROLE)
    local = source.directory
    kwargs = {"revision": None if local else source.revision, "local_files_only": True, "use_safetensors": True,
              "torch_dtype": getattr(torch, dtype)}
    if source.variant("unet"):
        kwargs["variant"] = source.variant("unet")
    try:
        pipe = StableDiffusionUpscalePipeline.from_pretrained(str(local or source.location), **kwargs)
    except (OSError, ValueError) as exc:
        raise BackendError(
            "missing_weights", f"Could not load the upscaler from {source.location}: {exc}",
            models.download_hint(spec) if not spec.smoke_test
            else f"Delete {local} and run again: the tiny upscaler is rebuilt.",
        ) from exc
    pipe.set_progress_bar_config(disable=True)  # progress goes out as protocol events instead
    return memory.apply(pipe, switches, device)


# -- the stage ----------------------------------------------------------------------------------

def runtime(device: str, dtype: str) -> dict:
    return {"device": device, "dtype": dtype, **{name: metadata.version(name) for name in ("torch", "diffusers")}}


def frame_inputs(shot: Shot, frame: int, identity: dict | None, device: str, dtype: str) -> dict:
    """Everything one delivered frame depends on; its hash decides whether a rerun may keep it."""
    inputs = {"code": __version__, "blended_sha256": files.sha256_file(blended_path(shot, frame)),
              "resolution": list(shot.resolution), "method": shot.upscale.method, "format": shot.upscale.format,
              "regenerate": regenerate.frame_inputs(shot, frame)}
    if identity is not None:  # the diffusion pass: its model, settings, noise and text, and where it ran
        inputs |= {"model": identity, "runtime": runtime(device, dtype), "steps": shot.upscale.steps,
                   "noise_level": shot.upscale.noise_level, "guidance_scale": shot.upscale.guidance_scale,
                   "seed": shot.seed, "prompt": shot.look.prompt, "negative_prompt": shot.look.negative_prompt}
    return inputs


def is_current(shot: Shot, frame: int, inputs_sha256: str) -> bool:
    try:
        record = json.loads(record_path(shot, frame).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    paths = delivered_paths(shot, frame)
    saved = record.get("outputs", {})
    return (record.get("inputs_sha256") == inputs_sha256 and set(saved) == set(paths)
            and all(p.is_file() and files.sha256_file(p) == saved[f] for f, p in paths.items()))


def current_records(shot: Shot, spec: models.ModelSpec | None, device: str) -> list[Path]:
    """The records of the frames a rerun would keep (inputs and files unchanged): what a cancel kept."""
    dtype = memory.dtype_name(device, shot.memory) if spec is not None else "float32"
    identity = _identity(describe(spec)) if spec is not None else None
    return [record_path(shot, f) for f in shot.frames if blended_path(shot, f).is_file()
            and is_current(shot, f, files.sha256_json(frame_inputs(shot, f, identity, device, dtype)))]


def run(shot: Shot, spec: models.ModelSpec | None = None, device: str = "cpu", cancel: CancelFlag | None = None,
        pipe=None) -> list[Path]:
    """Deliver every frame not delivered yet from today's blended frames; returns the files written.
    `spec`: resolve()'s upscaler (None: no diffusion pass); `pipe`: one already loaded (bench)."""
    missing = [f for f in shot.frames if not blended_path(shot, f).is_file()]
    if missing:
        raise BackendError(
            "frames_not_blended", f"Frames {missing[:5]}{'…' if len(missing) > 5 else ''} of {shot.directory} are "
            "not blended yet (blended/), so they cannot be upscaled.",
            f"Run: python -m inference generate {shot.directory} (it blends once every window is generated).",
        )
    diffusion = spec is not None
    if shot.upscale.method == "diffusion" and not diffusion and uses_diffusion(shot):
        raise ValueError("the diffusion pass needs the upscaler: pass resolve()'s spec")  # a caller's bug
    dtype = memory.dtype_name(device, shot.memory) if diffusion else "float32"
    identity = _identity(describe(spec)) if diffusion else None
    written, total = [], len(shot.frames)
    for number, frame in enumerate(shot.frames, 1):
        if cancel is not None:
            cancel.check()
        inputs = frame_inputs(shot, frame, identity, device, dtype)
        inputs_sha256 = files.sha256_json(inputs)
        if is_current(shot, frame, inputs_sha256):
            protocol.progress("upscale", number, total, f"frame {frame} unchanged, skipped")
            continue
        blended = Image.open(blended_path(shot, frame))
        text = dict(blended.text)  # the disclosure (and smoke-test warning) travels with the frame
        if diffusion:
            if pipe is None:
                pipe = load_pipeline(spec, device, dtype, shot.memory)
            rgb = _diffuse(pipe, shot, blended, frame, number, total, cancel)
        else:
            rgb = None
        # [regenerate] roles: every format is composited over the plate at the delivered size.
        over = regenerate.FrameComposite(shot, frame) if regenerate.active(shot) else None
        outputs = {}
        for fmt, path in delivered_paths(shot, frame).items():
            if fmt == "png8" and rgb is None:  # LANCZOS on the 8-bit frame: exactly the frames Rubble always made
                image = _resize8(blended.convert("RGB"), shot.resolution)
                if over is not None:
                    written += over.keep_unmasked(np.asarray(image), text)
                    image = Image.fromarray(np.round(over.over_plate(np.asarray(image), 255.0)).astype(np.uint8))
                files.write_png(path, image, text)
            else:
                rgb = rgb if rgb is not None else _resize_float(np.asarray(blended.convert("RGB")) / 255.0,
                                                                 shot.resolution)
                if over is not None and fmt == "png8":
                    written += over.keep_unmasked(frame_formats.to_uint8(rgb), text)
                frame_formats.WRITERS[fmt](path, over.over_plate(rgb, 1.0) if over is not None else rgb, text)
            outputs[fmt] = files.sha256_file(path)
            written.append(path)
        files.write_json(record_path(shot, frame), {"schema": RECORD_SCHEMA, "frame": frame, "inputs": inputs,
                                                    "inputs_sha256": inputs_sha256, "outputs": outputs})
        protocol.progress("upscale", number, total, f"frame {frame} delivered at {shot.resolution[0]}x{shot.resolution[1]}")
    return written


def _diffuse(pipe, shot: Shot, blended: Image.Image, frame: int, number: int, total: int, cancel) -> np.ndarray:
    """One frame through the x4 upscaler, then resized exactly to the shot: (H, W, 3) float in [0, 1].

    Every frame starts from the same noise (a CPU generator seeded with the shot seed, so every
    device draws the same numbers): fresh noise per frame would make the invented detail boil
    from frame to frame where the picture does not change.
    """
    import torch

    def on_step(step, timestep, latents):
        if cancel is not None:
            cancel.check()
        protocol.progress("upscale_step", step + 1, shot.upscale.steps, f"frame {frame} ({number}/{total})")

    with torch.no_grad():
        upscaled = pipe(
            prompt=shot.look.prompt, negative_prompt=shot.look.negative_prompt, image=blended.convert("RGB"),
            num_inference_steps=shot.upscale.steps, guidance_scale=shot.upscale.guidance_scale,
            noise_level=shot.upscale.noise_level, generator=torch.Generator("cpu").manual_seed(shot.seed),
            output_type="np", callback=on_step,
        ).images[0]
    if not np.isfinite(upscaled).all():
        raise BackendError(
            "non_finite_output", f"The upscaler decoded frame {frame} to NaN/inf pixels; nothing of it was saved.",
            'Run on the CPU (--device cpu, fp32) or set [memory] dtype = "fp32"; or set [upscale] method = "lanczos".',
        )
    return _resize_float(upscaled, shot.resolution)


def _resize8(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return image if image.size == tuple(size) else image.resize(size, Image.Resampling.LANCZOS)


def _resize_float(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """LANCZOS per channel in 32-bit float (Pillow's mode "F"), so 16-bit and EXR keep the precision."""
    if (rgb.shape[1], rgb.shape[0]) == tuple(size):
        return rgb.astype(np.float32)
    channels = [np.asarray(Image.fromarray(rgb[..., c].astype(np.float32)).resize(size, Image.Resampling.LANCZOS))
                for c in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0)


def chain(shot: Shot) -> list[str]:
    """The resize steps from the generated to the delivered size, in words."""
    generated = (shot.model.width, shot.model.height)
    steps, size = [], generated
    if uses_diffusion(shot):
        size = (generated[0] * SCALE, generated[1] * SCALE)
        steps.append(f"diffusion x{SCALE}: {generated[0]}x{generated[1]} -> {size[0]}x{size[1]}")
    if size != tuple(shot.resolution):
        steps.append(f"lanczos: {size[0]}x{size[1]} -> {shot.resolution[0]}x{shot.resolution[1]}")
    return steps


def provenance(shot: Shot, spec: models.ModelSpec | None) -> dict:
    """provenance.json's "upscale" and "resolution" keys."""
    return {
        "upscale": {**asdict(shot.upscale), "chain": chain(shot), "used": describe(spec)},
        "resolution": {"generated": [shot.model.width, shot.model.height], "delivered": list(shot.resolution)},
    }
