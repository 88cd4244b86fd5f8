"""Time and memory before Generate (issue 22 item 3): a short calibration on this device, cached, and
the whole shot's prediction from it.

Calibration runs the shot's first window (in free_noise mode the plan's one window: the whole shot)
at the generation size: a 1-step warm-up call (the first call of a process pays one-off costs that
later windows do not: "first call"), then CALIBRATION_STEPS steps timed through the pipeline's step
callback (a step: the median interval between callbacks), each call decoded. The prediction for the shot is

    load + first call + sum over the plan's windows of
        (overhead + steps x step_seconds x n / n_cal + decode_per_frame x n)

with n a window's frames and n_cal the calibrated window's (the denoising cost of a window grows with
its frames). Peak memory is the calibration's: the same window at the same size is the largest thing
generate holds (torch.cuda.max_memory_allocated on CUDA; the process's peak RSS elsewhere).

The calibration is cached in the user cache dir ($RUBBLE_ESTIMATE_CACHE, default
~/.cache/rubble/estimates/) under a key of everything its numbers depend on: the device, the model by
content, the size, the window's frames, the controls, guidance (CFG doubles the batch), the long-shot
mode, the memory switches and the library versions. Another shot of the same configuration reuses it.
"""

import io
import os
import platform
import time
from dataclasses import asdict
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from . import files, long_shot, models, protocol
from .protocol import BackendError
from .shot import Shot

CACHE_ENV = "RUBBLE_ESTIMATE_CACHE"
DEFAULT_CACHE = Path.home() / ".cache" / "rubble" / "estimates"
SCHEMA = "rubble.estimate/2"  # /2: the first call timed apart (older cached calibrations do not match)
# Four steps: the first carries the one-off work of a call (prompt encoding, control images,
# latents); a step on its own is the median of the next three intervals, so one interval slowed by
# another process on a shared machine does not set the estimate.
CALIBRATION_STEPS = 4
FILE = "estimate.json"  # the shot's last estimate, for the panel


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def device_identity(device: str) -> dict:
    """What makes one machine faster than another: the GPU's name and memory, or the CPU and its threads."""
    import torch

    if device == "cuda":
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        return {"device": "cuda", "name": props.name, "memory_bytes": props.total_memory}
    return {"device": device, "name": _cpu_name(), "threads": torch.get_num_threads()}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def configuration(shot: Shot, spec: models.ModelSpec, device: str, description: dict | None = None) -> dict:
    """Everything the calibration's numbers depend on: its cache key."""
    from . import families, memory

    family = families.get(shot.model.family)
    plan = long_shot.plan(shot)
    return {
        "schema": SCHEMA,
        "device": device_identity(device),
        "dtype": memory.dtype_name(device, shot.memory),
        "model": family.model_identity(description or models.describe(spec)),
        "size": [shot.model.width, shot.model.height],
        "window_frames": plan[0].stop - plan[0].start,
        "controls": len(shot.model.controls),
        "classifier_free_guidance": shot.look.guidance_scale > 1.0,  # diffusers' do_classifier_free_guidance
        "long_shot": long_shot.record(shot, shot.memory.split_inference),
        "memory": asdict(shot.memory),
        "versions": {name: metadata.version(name) for name in ("torch", "diffusers")},
    }


def cache_path(config: dict) -> Path:
    return cache_dir() / f"{files.sha256_json(config)[:32]}.json"


def read_cache(config: dict) -> dict | None:
    import json

    try:
        entry = json.loads(cache_path(config).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return entry if entry.get("configuration") == config else None


def write_cache(config: dict, calibration: dict) -> dict:
    entry = {"configuration": config, "calibration": calibration,
             "calibrated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    files.write_json(cache_path(config), entry)
    return entry


def peak_memory(device: str) -> tuple[int | None, str]:
    """(bytes, what was measured): torch's peak allocation on CUDA, else the process's peak RSS."""
    import torch

    if device == "cuda":
        return int(torch.cuda.max_memory_allocated()), "cuda_max_memory_allocated"
    try:
        import resource
    except ImportError:  # Windows: no getrusage
        return None, "unavailable"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if platform.system() == "Darwin" else peak * 1024), "peak_rss"  # bytes on macOS, KiB on Linux


def calibrate(shot: Shot, spec: models.ModelSpec, device: str, cancel) -> dict:
    """Load the model, warm it up with one step, and time CALIBRATION_STEPS steps of the plan's first window."""
    import numpy as np
    import torch
    from PIL import Image

    from . import families, memory

    family = families.get(shot.model.family)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    pipe = models.load_pipeline(spec, device, memory.dtype_name(device, shot.memory), shot.memory)
    if pipe.vae.dtype == torch.float16 and pipe.vae.config.force_upcast:  # as the family's run decodes
        pipe.vae.to(torch.float32)
    long_shot.prepare(pipe, shot, shot.memory.split_inference)
    load_seconds = time.perf_counter() - started

    window = long_shot.plan(shot)[0]
    frames = shot.frames[window.start : window.stop]
    scale = family.VAE_SCALE_FACTOR
    shape = (1, family.LATENT_CHANNELS, len(frames), shot.model.height // scale, shot.model.width // scale)
    latents = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(shot.seed))
    controls = family.control_arguments(shot, frames)

    def denoise_and_decode(steps: int) -> tuple[list[float], float, float]:
        """One pipeline call of `steps` steps, then the decode: (step-end times, start, decode seconds)."""
        ticks = []

        def on_step(pipeline, step, timestep, tensors):
            cancel.check()
            ticks.append(time.perf_counter())
            protocol.progress("calibrate", step + 1, steps, f"step {step + 1}/{steps}")
            return tensors

        started = time.perf_counter()
        output = pipe(
            prompt=shot.look.prompt,
            negative_prompt=shot.look.negative_prompt,
            num_frames=len(frames),
            width=shot.model.width,
            height=shot.model.height,
            num_inference_steps=steps,
            guidance_scale=shot.look.guidance_scale,
            **controls,
            latents=latents.to(device=pipe._execution_device, dtype=pipe.unet.dtype),
            output_type="latent",
            callback_on_step_end=on_step,
        )
        decode_started = time.perf_counter()
        pixels = family.decode(pipe, output.frames, shot.model.decode_chunk_size, window, frames)
        for frame in pixels:  # as the run writes them: PNG-encoded
            Image.fromarray(frame).save(io.BytesIO(), format="PNG")
        return ticks, started, time.perf_counter() - decode_started

    # A process's first call pays one-off costs (kernel selection, first allocations) that later windows
    # do not: a 1-step warm-up call measures them, and the timed call runs warm.
    warm_ticks, warm_started, warm_decode = denoise_and_decode(1)
    ticks, started, decode_seconds = denoise_and_decode(CALIBRATION_STEPS)
    step_seconds = float(np.median(np.diff(ticks)))
    overhead = max(0.0, ticks[0] - started - step_seconds)
    first_call = (warm_ticks[0] - warm_started) + warm_decode
    once = max(0.0, first_call - (overhead + step_seconds + decode_seconds))
    peak, kind = peak_memory(device)
    return {
        "frames": len(frames),
        "steps": CALIBRATION_STEPS,
        "load_seconds": round(load_seconds, 4),
        "first_call_seconds": round(once, 4),  # once per process, beyond what a warm window takes
        "step_seconds": round(step_seconds, 4),
        "window_overhead_seconds": round(overhead, 4),
        "decode_seconds_per_frame": round(decode_seconds / len(frames), 4),
        "peak_memory_bytes": peak,
        "peak_memory_kind": kind,
    }


def predict(shot: Shot, calibration: dict) -> dict:
    """The whole shot's time and peak memory from a calibration (see the module docstring)."""
    lengths = [w.stop - w.start for w in long_shot.plan(shot)]
    per_window = [
        calibration["window_overhead_seconds"]
        + shot.look.steps * calibration["step_seconds"] * n / calibration["frames"]
        + calibration["decode_seconds_per_frame"] * n
        for n in lengths
    ]
    seconds = calibration["load_seconds"] + calibration["first_call_seconds"] + sum(per_window)
    return {
        "seconds": round(seconds, 2),
        "minutes": round(seconds / 60.0, 2),
        "load_seconds": calibration["load_seconds"],
        "windows": len(lengths),
        "steps": shot.look.steps,
        "peak_memory_bytes": calibration["peak_memory_bytes"],
        "peak_memory_kind": calibration["peak_memory_kind"],
        "message": sentence(seconds),
    }


def sentence(seconds: float) -> str:
    if seconds < 90:
        amount = f"{max(1, round(seconds))} seconds"
    else:
        minutes = round(seconds / 60)
        amount = f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"about {amount} on this device for this shot"


def run(shot: Shot, spec: models.ModelSpec, device: str, cancel, recalibrate: bool = False) -> dict:
    """The estimate, calibrating only when no calibration of this configuration is cached; written
    to <shot>/estimate.json for the panel."""
    from . import families

    family = families.get(shot.model.family)
    if not hasattr(family, "control_arguments"):
        raise BackendError(
            "estimate_unsupported",
            f"The estimate calibrates through the AnimateDiff pipeline; [model] family = {shot.model.family!r} "
            "has no calibration yet.",
            "Generate a short shot of this family and read its timings in provenance.json instead.",
        )
    config = configuration(shot, spec, device)
    entry = None if recalibrate else read_cache(config)
    cached = entry is not None
    if entry is None:
        entry = write_cache(config, calibrate(shot, spec, device, cancel))
    prediction = predict(shot, entry["calibration"])
    record = {"schema": SCHEMA, **prediction, "cached": cached, "calibration_key": cache_path(config).stem,
              "calibrated_at": entry["calibrated_at"], "calibration": entry["calibration"],
              "device": config["device"], "smoke_test": spec.smoke_test}
    files.write_json(shot.directory / FILE, record)
    return record


def for_provenance(shot: Shot, spec: models.ModelSpec, device: str, description: dict, timings: dict,
                   windows_generated: int) -> dict:
    """What provenance.json says after a real generate: the cached estimate for this configuration
    (None when none was made) beside the measured time and memory."""
    entry = read_cache(configuration(shot, spec, device, description))
    peak, kind = peak_memory(device)
    return {
        "predicted": predict(shot, entry["calibration"]) if entry else None,
        "calibration_key": cache_path(configuration(shot, spec, device, description)).stem if entry else None,
        # The prediction covers loading + the windows: the "windows" stage (it loads the model too).
        "measured_seconds": timings.get("windows"),
        "measured_total_seconds": round(sum(timings.values()), 3),
        "windows_generated": windows_generated,
        "windows_total": len(long_shot.plan(shot)),
        "measured_peak_memory_bytes": peak,
        "peak_memory_kind": kind,
    }
