"""What every model family shares: the runtime a window was computed with, the control maps'
hashes (what a window's inputs are), the control frames at the generation size, and the window
record (written last: its presence means the window's frames are complete)."""

from importlib import metadata

import numpy as np
from PIL import Image

from .. import control, files, memory, pipeline_cache, protocol, windows
from ..shot import Shot


def runtime(device: str, dtype: str) -> dict:
    """Where and with what the numbers were computed: the same seed gives other frames on another
    device, dtype or library version, so a window made elsewhere is not reused as if it were ours."""
    return {
        "device": device,
        "dtype": dtype,
        **{name: metadata.version(name) for name in ("torch", "diffusers")},
    }


def model_identity(description: dict) -> dict:
    """What the model is, by content, not where it lies: the same weights under another path
    (relative or absolute, another cache) are the same model (models.describe() has the hashes)."""
    if description["smoke_test"]:
        return {"smoke_test": True, "tiny_model_sha256": description["tiny_model_sha256"]}
    return {
        "smoke_test": False,
        "sources": {
            role: {"commit": source["commit"], "sha256": source["sha256"]}
            for role, source in sorted(description["sources"].items())
        },
    }


def control_hashes(shot: Shot) -> dict[int, dict[str, str | None]]:
    """sha256 of each frame's control map of each [[controls]] kind (None where it is missing)."""
    hashes = {}
    for frame in shot.frames:
        paths = {c.kind: control.map_path(shot, c.kind, frame) for c in shot.model.controls}
        hashes[frame] = {kind: files.sha256_file(p) if p.is_file() else None for kind, p in paths.items()}
    return hashes


def conditioning(shot: Shot, kind: str, frames: list[int]) -> list[np.ndarray]:
    """One kind's control maps at the generation size, float [0, 1] RGB: one (H, W, 3) per frame."""
    return [as_float(frame) for frame in control_frames(shot, kind, frames)]


def control_frames(shot: Shot, kind: str, frames: list[int]) -> list[np.ndarray]:
    """One kind's control maps at the generation size, as compact as they are exact: depth keeps its
    16 bits until here, resized as float grey (H, W) float32 in [0, 1]; the 8-bit maps are resized as
    they are, (H, W, 3) uint8. `as_float` turns a frame into what `conditioning` gives."""
    size = (shot.model.width, shot.model.height)
    out = []
    for frame in frames:
        if kind == "depth":
            out.append(np.asarray(Image.fromarray(control.load_depth(shot, frame)).resize(size, Image.Resampling.BILINEAR),
                                  dtype=np.float32))
        else:
            image = Image.open(control.map_path(shot, kind, frame)).convert("RGB")
            out.append(np.asarray(image.resize(size, Image.Resampling.BILINEAR)))
    return out


def as_float(frame: np.ndarray) -> np.ndarray:
    """A frame of `control_frames` as float32 [0, 1] RGB (H, W, 3): grey repeated, 8-bit / 255."""
    if frame.ndim == 2:
        return np.repeat(frame[..., None], 3, axis=-1)
    return frame.astype(np.float32) / 255.0


def write_frames(shot: Shot, window: windows.Window, frames: list[int], pixels_per_frame) -> None:
    """A window's frames as 8-bit PNGs, (F, H, W, 3) floats in [0, 1]."""
    for frame, pixels in zip(frames, pixels_per_frame):
        image = Image.fromarray(np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8))
        files.write_png(windows.frame_path(shot.directory, window, frame), image)


def write_record(shot: Shot, window: windows.Window, frames: list[int], inputs: dict, device: str, **details) -> None:
    """The window's record (after its frames): its inputs and their hash (resume), and `details`
    (timings, offload, ...) for provenance."""
    files.write_json(
        windows.record_path(shot.directory, window),
        {
            "schema": windows.RECORD_SCHEMA,
            "index": window.index,
            "frames": [frames[0], frames[-1]],
            "inputs_sha256": files.sha256_json(inputs),
            "inputs": inputs,
            "device": device,
            **details,
        },
    )


def windows_to_do(plan: list, chosen: list, inputs_of, records_root) -> tuple[list, list[int]]:
    """The chosen windows to generate, as (window, inputs), and the indices of those kept: a window is
    kept (resume) when its record under `records_root` was made from exactly today's inputs."""
    todo, skipped = [], []
    for window in chosen:
        inputs = inputs_of(window)
        record = windows.read_record(records_root, window)
        if record is not None and record.get("inputs_sha256") == files.sha256_json(inputs):
            skipped.append(window.index)
            protocol.progress("window", window.index, len(plan), f"window {window.index} unchanged, skipped")
        else:
            todo.append((window, inputs))
    return todo, skipped


def with_offload_retry(make, pipe, shot: Shot, device: str, window: windows.Window, offloaded: bool):
    """`make()` (one window's frames); on GPU out-of-memory, once more with model CPU offload where
    [memory] retry_with_offload allows it and the pipeline is not offloaded yet. Returns (result,
    retried); an out-of-memory that is not retried is a BackendError naming the switches that help."""
    import torch

    where = f"in window {window.index} (frames {shot.frames[window.start]}–{shot.frames[window.stop - 1]})"
    try:
        return make(), False
    except torch.OutOfMemoryError as exc:
        if offloaded or not memory.can_retry(shot.memory):
            raise memory.out_of_memory(exc, shot.memory, shot.long_shot.mode, where) from exc
    # Out of the except block: the failed attempt's traceback (and the tensors its frames hold) is gone.
    memory.retrying(window.index)
    release_cache(device)
    memory.enable_offload(pipe, device)
    pipeline_cache.discard()  # now offloaded: the next run starts from a fresh load
    try:
        return make(), True
    except torch.OutOfMemoryError as again:
        raise memory.out_of_memory(again, shot.memory, shot.long_shot.mode, where, retried=True) from again


def release_cache(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def step_progress(cancel, window: windows.Window, done_before: int, steps: int, total_steps: int):
    """The pipeline's callback_on_step_end for one window: stops at a cancel request, and reports the
    step among every step of the run (`done_before` of them came before this window's)."""
    def on_step(pipeline, step, timestep, tensors):
        cancel.check()
        protocol.progress("generate", done_before + step + 1, total_steps,
                          f"window {window.index} step {step + 1}/{steps}")
        return tensors

    return on_step
