"""Synthetic shots in Blender 5.0's pass layout, the tiny model, and a subprocess runner."""

import json
import math
import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import OpenEXR
import pytest

REPO = Path(__file__).resolve().parents[2]
BACKGROUND = 1e10  # what Blender writes where no surface was hit

# Camera at (0, -10, 2) looking along world +Y (Blender: rotation X = 90°): camera +X is
# world +X, camera +Y (up) is world +Z, and the camera looks down its local -Z = world +Y.
CAMERA_MATRIX = [
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, -1.0, -10.0],
    [0.0, 1.0, 0.0, 2.0],
    [0.0, 0.0, 0.0, 1.0],
]
FACING_CAMERA = (0.0, -1.0, 0.0)  # world normal of the box's front face
POINTING_RIGHT = (1.0, 0.0, 0.0)  # world normal of the box's right side (camera-right)
UP = (0.0, 0.0, 1.0)  # the ground


@dataclass(frozen=True)
class Layout:
    """Where the synthetic scene's regions are, in pixel rows/columns (for assertions)."""

    sky_rows: slice
    ground_rows: slice
    box_rows: slice
    box_front_cols: slice
    box_side_cols: slice


def layout(width: int, height: int) -> Layout:
    return Layout(
        sky_rows=slice(0, height // 4),
        ground_rows=slice(height * 3 // 4, height),
        box_rows=slice(height // 4, height * 3 // 4),
        box_front_cols=slice(width // 4, width // 2),
        box_side_cols=slice(width // 2, width // 2 + width // 8),
    )


def write_passes(path: Path, width: int, height: int, box_depth: float, frame: int) -> None:
    """One frame: sky on top, a ground plane below, a box in the middle, as Blender 5.0 writes it."""
    at = layout(width, height)
    depth = np.full((height, width), BACKGROUND, np.float32)
    normal = np.zeros((height, width, 3), np.float32)
    index = np.zeros((height, width), np.float32)
    rows = np.arange(height, dtype=np.float32)[:, None]
    ground_depth = 40.0 / (1.0 + rows[at.ground_rows] - at.ground_rows.start)  # nearer at the bottom
    depth[at.box_rows.stop :] = np.broadcast_to(ground_depth, depth[at.box_rows.stop :].shape)
    depth[at.box_rows] = 60.0  # a far wall behind the box
    normal[at.box_rows.stop :] = UP
    normal[at.box_rows] = FACING_CAMERA
    index[at.box_rows.stop :] = 2
    depth[at.box_rows, at.box_front_cols] = box_depth
    normal[at.box_rows, at.box_front_cols] = FACING_CAMERA
    depth[at.box_rows, at.box_side_cols] = box_depth + 0.5
    normal[at.box_rows, at.box_side_cols] = POINTING_RIGHT
    index[at.box_rows, at.box_front_cols] = 1
    index[at.box_rows, at.box_side_cols] = 1
    shade = np.clip(normal @ np.array([0.3, -0.6, 0.7], np.float32), 0.05, 1.0)
    combined = np.concatenate([np.repeat(shade[..., None] * 0.6, 3, -1), (depth < 1e9)[..., None]], -1)
    vector = np.zeros((height, width, 4), np.float32)
    vector[index == 1] = (-1.0, 0.0, -1.0, 0.0)

    def part(name, channels):
        header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage, "Frame": str(frame)}
        return OpenEXR.Part(header, {f"ViewLayer.{k}": v.astype(np.float32) for k, v in channels.items()}, f"ViewLayer.{name}")

    parts = [
        part("Combined", {"Combined": combined}),
        part("Depth", {"Depth.Z": depth}),
        part("Normal", {f"Normal.{c}": normal[..., i] for i, c in enumerate("XYZ")}),
        part("Vector", {f"Vector.{c}": vector[..., i] for i, c in enumerate("XYZW")}),
        part("Object Index", {"Object Index.X": index}),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    OpenEXR.File(parts).write(str(path))


def box_depth(frame: int, box_scale: float = 1.0, moving: bool = True) -> float:
    return box_scale * (10.0 - (frame if moving else 1))


def make_shot(
    shot_dir: Path,
    frames: int = 4,
    size: tuple[int, int] = (64, 48),
    box_scale: float = 1.0,
    model: dict | None = None,
    look: dict | None = None,
    long_shot: dict | None = None,
    seed: int = 1234,
    moving: bool = True,
    controls: list[dict] | None = None,
) -> Path:
    """A complete shot directory: shot.json (with the default preset, resolved) + EXR passes.

    moving=False keeps the box still, so every frame's passes (and control maps) are the same.
    controls: [[controls]] tables replacing the default preset's (kind and model at least)."""
    preset = tomllib.loads((REPO / "presets" / "default.toml").read_text(encoding="utf-8"))
    # Small and quick: a 128x80 generation, windows of 2 with 1 shared frame -> 3 windows for 4 frames.
    preset["model"].update({"width": 128, "height": 80, "window": 2, "overlap": 1, **(model or {})})
    preset["look"].update({"steps": 2, **(look or {})})
    if controls is not None:  # replaces the default preset's [[controls]] (depth + normal)
        preset["controls"] = controls
    # The window tests exercise windows mode; free_noise tests ask for it (long_shot={"mode": "free_noise"}).
    preset.setdefault("long_shot", {}).update({"mode": "windows", **(long_shot or {})})
    width, height = size
    for frame in range(1, frames + 1):
        # The box approaches the camera over the shot.
        write_passes(shot_dir / "passes" / f"{frame:04d}.exr", width, height, box_depth(frame, box_scale, moving), frame)
    camera = {
        "matrix_world": CAMERA_MATRIX,
        "lens_mm": 35.0,
        "sensor_width_mm": 36.0,
        "sensor_height_mm": 24.0,
        "sensor_fit": "AUTO",
        "clip_start": 0.1,
        "clip_end": 1000.0,
    }
    shot = {
        "schema": "rubble.shot/1",
        "frame_start": 1,
        "frame_end": frames,
        "fps": 24,
        "resolution": [width, height],
        "seed": seed,
        "passes": "passes/{frame:04d}.exr",
        "roles": {"1": "building", "2": "ground"},
        "camera": {str(f): camera for f in range(1, frames + 1)},
        "preset": preset,
        "created_by": {"rubble": "0.1.0", "blender": "5.0.1"},
    }
    (shot_dir / "shot.json").write_text(json.dumps(shot, indent=2), encoding="utf-8")
    return shot_dir


@dataclass
class Run:
    returncode: int
    events: list[dict]
    stderr: str

    def of_type(self, event_type: str) -> list[dict]:
        return [e for e in self.events if e["type"] == event_type]


def run_backend(*args: str, timeout: float = 300, env: dict | None = None) -> Run:
    """Run `python -m inference ARGS` as a real process; every stdout line must be an event."""
    proc = subprocess.run(
        [sys.executable, "-m", "inference", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert all(e["schema"] == "rubble.events/1" for e in events), events
    return Run(proc.returncode, events, proc.stderr)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The tiny random-weight model, built once per test session by the backend's own command."""
    out = tmp_path_factory.mktemp("tiny") / "model"
    run = run_backend("tiny-model", str(out))
    assert run.returncode == 0, run.stderr
    return out


def angle_deg(a, b) -> float:
    return math.degrees(math.acos(max(-1.0, min(1.0, float(np.dot(a, b))))))


def add_near_object(shot_dir: Path, frames, depth: float = 1.0) -> None:
    """Put a near object (in the sky, top-left) into `frames`' Depth pass, so the shot's nearest
    depth changes over time: per-frame or per-chunk depth statistics then differ from per-shot ones."""
    for frame in frames:
        path = shot_dir / "passes" / f"{frame:04d}.exr"
        parts = []
        for part in OpenEXR.File(str(path), separate_channels=True).parts:
            channels = {name: np.array(channel.pixels) for name, channel in part.channels.items()}
            if "ViewLayer.Depth.Z" in channels:
                z = channels["ViewLayer.Depth.Z"]
                at = layout(z.shape[1], z.shape[0])
                z[at.sky_rows, : z.shape[1] // 4] = depth
            header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage, "Frame": str(frame)}
            parts.append(OpenEXR.Part(header, channels, part.name()))
        OpenEXR.File(parts).write(str(path))


def rewrite_channels(path: Path, change) -> None:
    """Rewrite one EXR in place: `change(channels)` edits the dict {"ViewLayer.Depth.Z": array, ...}."""
    channels, names = {}, {}
    for part in OpenEXR.File(str(path), separate_channels=True).parts:
        for name, channel in part.channels.items():
            channels[name] = np.array(channel.pixels)
            names[name] = part.name()
    change(channels)
    frame = path.stem.lstrip("0") or "0"
    parts = [
        OpenEXR.Part(
            {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage, "Frame": frame},  # one each
            {n: channels[n] for n in names if names[n] == part},
            part,
        )
        for part in dict.fromkeys(names.values())
    ]
    OpenEXR.File(parts).write(str(path))


class OutOfMemoryHook:
    """A forward pre-hook on the denoiser (AnimateDiff's UNet, Wan's transformer) that raises CUDA
    out-of-memory on its next `failures` calls (the pipeline itself is untouched). Counts the calls."""

    def __init__(self, pipe, failures: int = 0):
        self.failures, self.calls = failures, 0
        (pipe.unet if hasattr(pipe, "unet") else pipe.transformer).register_forward_pre_hook(self)

    def __call__(self, module, args):
        import torch

        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
