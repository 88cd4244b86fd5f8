"""AnimateDiff + depth ControlNet over windows of frames (preset family "animatediff-controlnet").

Every window depends only on the passes (through the control maps), the preset and the shot
seed: the noise for all frames is drawn once from the seed and sliced per window, so windows
can run in any order, on any machine, and a finished window is never redone (resume).
"""

import time
from dataclasses import asdict

import numpy as np
from PIL import Image

from . import __version__, control, files, models, protocol, windows
from .cancel import CancelFlag
from .models import ModelSpec
from .protocol import BackendError
from .shot import Shot

LATENT_CHANNELS = 4  # SD1.5's VAE latent channels
VAE_SCALE_FACTOR = 8  # SD1.5's VAE downsampling (the tiny model matches it)


def window_inputs(shot: Shot, model_description: dict, window: windows.Window) -> dict:
    """Everything a window's frames depend on; its hash decides whether a rerun may reuse them."""
    frames = shot.frames[window.start : window.stop]
    return {
        "family": shot.model.family,
        "code": __version__,
        "model": model_description,
        "size": [shot.model.width, shot.model.height],
        "look": asdict(shot.look),
        "seed": shot.seed,
        "shot_frames": [shot.frame_start, shot.frame_end],  # the shot noise's shape
        "window": [frames[0], frames[-1]],
        "control_sha256": {str(f): files.sha256_file(control.map_path(shot, "depth", f)) for f in frames},
    }


def run(shot: Shot, spec: ModelSpec, device: str, selected: list[int] | None, cancel: CancelFlag) -> dict:
    """Generate the selected windows (all by default) that are missing or out of date."""
    plan = windows.plan(len(shot.frames), shot.model.window, shot.model.overlap)
    unknown = sorted(set(selected or []) - {w.index for w in plan})
    if unknown:
        raise BackendError(
            "bad_window",
            f"Windows {unknown} do not exist; this shot has windows 0–{len(plan) - 1}.",
            "Pick window indices from the plan (python -m inference validate SHOT lists it).",
        )
    chosen = [w for w in plan if selected is None or w.index in selected]

    # 1. Decide which windows need work.
    description = models.describe(spec)
    todo, skipped = [], []
    for window in chosen:
        inputs = window_inputs(shot, description, window)
        record = windows.read_record(shot.directory, window)
        if record is not None and record.get("inputs_sha256") == files.sha256_json(inputs):
            skipped.append(window.index)
            protocol.progress("window", window.index, len(plan), f"window {window.index} unchanged, skipped")
        else:
            todo.append((window, inputs))
    if not todo:
        return {"generated": [], "skipped": skipped}

    # 2. Load the model (the slow part on a cold start).
    import torch

    started = time.perf_counter()
    try:
        pipe = models.load_pipeline(spec, device)
    except torch.OutOfMemoryError as exc:
        raise _out_of_memory(exc) from exc
    load_seconds = time.perf_counter() - started

    # 3. Shot-level noise: drawn once, on the CPU so every device gets the same numbers.
    generator = torch.Generator("cpu").manual_seed(shot.seed)
    latent_shape = (
        1,
        LATENT_CHANNELS,
        len(shot.frames),
        shot.model.height // VAE_SCALE_FACTOR,
        shot.model.width // VAE_SCALE_FACTOR,
    )
    noise = torch.randn(latent_shape, generator=generator, dtype=torch.float32)

    # 4. Each window: control frames + its slice of the noise -> frames -> files, record last.
    steps = shot.look.steps
    total_steps = steps * len(todo)
    generated = []
    for position, (window, inputs) in enumerate(todo):
        cancel.check()
        frames = shot.frames[window.start : window.stop]
        started = time.perf_counter()

        def on_step(pipeline, step, timestep, tensors, position=position, window=window):
            cancel.check()
            protocol.progress(
                "generate", position * steps + step + 1, total_steps, f"window {window.index} step {step + 1}/{steps}"
            )
            return tensors

        try:
            output = pipe(
                prompt=shot.look.prompt,
                negative_prompt=shot.look.negative_prompt,
                num_frames=len(frames),
                width=shot.model.width,
                height=shot.model.height,
                num_inference_steps=steps,
                guidance_scale=shot.look.guidance_scale,
                controlnet_conditioning_scale=shot.look.controlnet_scale,
                conditioning_frames=_conditioning(shot, frames),
                latents=noise[:, :, window.start : window.stop].to(device=pipe.device, dtype=pipe.unet.dtype),
                output_type="np",
                callback_on_step_end=on_step,
            )
        except torch.OutOfMemoryError as exc:
            raise _out_of_memory(exc) from exc
        for frame, pixels in zip(frames, output.frames[0]):
            image = Image.fromarray(np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8))
            files.write_png(windows.frame_path(shot.directory, window, frame), image)
        seconds = time.perf_counter() - started
        files.write_json(
            windows.record_path(shot.directory, window),
            {
                "schema": windows.RECORD_SCHEMA,
                "index": window.index,
                "frames": [frames[0], frames[-1]],
                "inputs_sha256": files.sha256_json(inputs),
                "inputs": inputs,
                "device": device,
                "seconds": round(seconds, 3),
                "model_load_seconds": round(load_seconds, 3),
            },
        )
        generated.append(window.index)
        protocol.progress("window", window.index + 1, len(plan), f"window {window.index} done in {seconds:.1f} s")
    return {"generated": generated, "skipped": skipped}


def _conditioning(shot: Shot, frames: list[int]) -> list[np.ndarray]:
    """Depth control maps at the generation size, float [0, 1], grey in RGB: one (H, W, 3) per frame."""
    size = (shot.model.width, shot.model.height)
    maps = [
        np.asarray(Image.fromarray(control.load_depth(shot, f)).resize(size, Image.Resampling.BILINEAR))
        for f in frames
    ]
    return [np.repeat(m[..., None], 3, axis=-1).astype(np.float32) for m in maps]


def _out_of_memory(exc: BaseException) -> BackendError:
    return BackendError(
        "out_of_memory",
        f"The GPU ran out of memory: {exc}",
        "Lower [model] window (frames per window) or width/height in the preset, close other GPU programs, "
        "or run on a larger GPU; on small GPUs diffusers' enable_model_cpu_offload() trades speed for memory.",
    )
