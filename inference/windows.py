"""Windows of frames: the plan, where each window's output and record live, and the cross-fade weights.

A window is generated independently (shot-level noise sliced per window), so windows can run
in any order or in parallel; `blend` joins them afterwards (design.md, stage 7).
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RECORD_SCHEMA = "rubble.window/1"


@dataclass(frozen=True)
class Window:
    index: int
    start: int  # offset of the first frame in the shot (0-based)
    stop: int  # offset one past the last frame


def plan(frame_count: int, window: int, overlap: int) -> list[Window]:
    """Windows of `window` frames sharing `overlap` frames; the last one is moved back to end
    on the last frame, so every window has full temporal context (sharing a bit more)."""
    if frame_count <= window:
        return [Window(0, 0, frame_count)]
    stride = window - overlap
    starts = list(range(0, frame_count - window + 1, stride))
    if starts[-1] + window < frame_count:
        starts.append(frame_count - window)
    return [Window(i, s, s + window) for i, s in enumerate(starts)]


def directory(shot_dir: Path, window: Window) -> Path:
    return Path(shot_dir) / "windows" / f"{window.index:03d}"


def frame_path(shot_dir: Path, window: Window, frame: int) -> Path:
    return directory(shot_dir, window) / f"{frame:04d}.png"


def record_path(shot_dir: Path, window: Window) -> Path:
    # Written last: its presence means the window's frames are complete.
    return directory(shot_dir, window) / "record.json"


def read_record(shot_dir: Path, window: Window) -> dict | None:
    path = record_path(shot_dir, window)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):  # absent or torn by a crash: redo the window
        return None


def weights(window: Window, windows: list[Window]) -> np.ndarray:
    """Linear cross-fade weights for a window's frames; at every frame they sum to 1 over all windows.

    Each window ramps up over the frames it shares with earlier windows, (1, 2, …, n)/(n+1), and
    down over those it shares with later ones, (n, …, 2, 1)/(n+1); frames in no other window
    weigh 1. Two overlapping windows' ramps already sum to 1; where three windows meet (the
    moved-back last window) they do not, so every weight is divided by the sum of the ramps of
    all windows covering its frame, and `blend` can add weighted frames without dividing.
    """
    covering = np.zeros(window.stop - window.start)
    for other in windows:
        start, stop = max(other.start, window.start), min(other.stop, window.stop)
        if start < stop:
            covering[start - window.start : stop - window.start] += _ramps(other, windows)[start - other.start : stop - other.start]
    return _ramps(window, windows) / covering


def _ramps(window: Window, windows: list[Window]) -> np.ndarray:
    length = window.stop - window.start
    k = np.arange(length, dtype=np.float64)
    w = np.ones(length)
    earlier = [other for other in windows if other.start < window.start < other.stop]
    later = [other for other in windows if window.start < other.start < window.stop]
    if earlier:
        shared = max(other.stop for other in earlier) - window.start
        w = np.minimum(w, (k + 1) / (shared + 1))
    if later:
        shared = window.stop - min(other.start for other in later)
        w = np.minimum(w, (length - k) / (shared + 1))
    return w
