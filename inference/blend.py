"""Join the windows into the shot's frames: cross-fade overlaps, resize, write atomically."""

import json

import numpy as np
from PIL import Image

from . import __version__, families, files, long_shot, protocol, regenerate, windows
from .protocol import BackendError
from .shot import Shot

DISCLOSURE = "AI-generated"


def frame_path(shot: Shot, frame: int):
    return shot.directory / "frames" / f"{frame:04d}.png"


def unfinished(shot: Shot) -> tuple[list[int], list[int]]:
    """Windows not generated yet, and windows generated from inputs that have changed since
    (passes re-rendered, preset edited): blending either would put wrong frames in frames/."""
    plan = long_shot.plan(shot)
    records = {w.index: windows.read_record(shot.directory, w) for w in plan}
    missing = [i for i, r in records.items() if r is None]
    return missing, families.get(shot.model.family).stale_windows(shot, {i: r for i, r in records.items() if r is not None})


def redo_command(shot: Shot, indices: list[int]) -> str:
    return f"python -m inference generate {shot.directory} --windows {','.join(map(str, indices))}"


def run(shot: Shot) -> list:
    plan = long_shot.plan(shot)
    missing, stale = unfinished(shot)
    if missing:
        raise BackendError(
            "windows_missing",
            f"Windows {missing} of {len(plan)} are not generated yet, so the frames cannot be blended.",
            f"Run: {redo_command(shot, missing)}",
        )
    if stale:
        raise BackendError(
            "windows_stale",
            f"Windows {stale} of {len(plan)} were generated from control maps or settings that have changed "
            "since (passes re-rendered or preset edited), so the frames cannot be blended.",
            f"Run: {redo_command(shot, stale)} (or generate without --windows, which redoes every out-of-date window).",
        )
    records = {w.index: windows.read_record(shot.directory, w) for w in plan}
    _check_same_generation(shot, records)
    smoke_test = next(iter(records.values()))["inputs"]["model"]["smoke_test"]

    text = {"Disclaimer": DISCLOSURE, "Software": f"Rubble {__version__}"}  # PNG spec 11.3.4.2 keywords
    if smoke_test:
        text["Warning"] = "random weights — smoke test"
    weights = {w.index: windows.weights(w, plan) for w in plan}
    written = []
    for offset, frame in enumerate(shot.frames):
        total = 0.0
        for window in plan:
            if window.start <= offset < window.stop:
                weight = weights[window.index][offset - window.start]  # a frame's weights sum to 1
                pixels = np.asarray(Image.open(windows.frame_path(shot.directory, window, frame)), dtype=np.float64)
                total = total + pixels * weight
        blended = Image.fromarray(np.round(total).astype(np.uint8))
        if blended.size != shot.resolution:
            blended = blended.resize(shot.resolution, Image.Resampling.LANCZOS)
        path = frame_path(shot, frame)
        files.write_png(path, blended, text)
        written.append(path)
        protocol.progress("blend", offset + 1, len(shot.frames), f"frame {frame}")
    return written + regenerate.composite(shot)  # [regenerate] roles: frames/ over the plate, the rest kept


def _check_same_generation(shot: Shot, records: dict) -> None:
    """Windows made with other weights would cut visibly; refuse to mix them. (Another look, seed or
    size makes a window stale, caught above; the model is compared by content, not path.)"""
    def generation(record):
        inputs = record["inputs"]
        return json.dumps({k: inputs[k] for k in ("model", "look", "seed", "size", "shot_frames")}, sort_keys=True)

    kinds = {generation(r) for r in records.values()}
    if len(kinds) > 1:
        raise BackendError(
            "windows_mixed",
            f"The windows of {shot.directory} were generated with different models, looks or seeds.",
            f"Run: python -m inference generate {shot.directory} (it redoes the out-of-date windows).",
        )
