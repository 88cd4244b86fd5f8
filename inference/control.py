"""Control maps derived from the raw passes (docs/contract.md, "What the backend derives").

Depth: disparity 1/z, normalised once per shot over all frames (per-frame normalisation
flickers), near = bright, background black, 16-bit grey. Normal: camera space, in the
normalbae colour convention the SD1.5 normal ControlNet was trained on. Clay: an sRGB preview.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from . import __version__, files, passes, protocol
from .shot import Shot

STATS_SCHEMA = "rubble.control-stats/1"
# Blender writes ~1e10 where no surface was hit (docs/contract.md); anything this far is sky.
BACKGROUND_DEPTH = 1e9
# Robust range: a few stray near pixels (debris in front of the lens) must not crush the rest.
PERCENTILES = (1.0, 99.0)
KINDS = ("depth", "normal", "clay")


@dataclass(frozen=True)
class DepthStats:
    disparity_low: float  # maps to 0 (far foreground)
    disparity_high: float  # maps to 1 (near)


def map_path(shot: Shot, kind: str, frame: int) -> Path:
    return shot.directory / "control" / kind / f"{frame:04d}.png"


def derive(shot: Shot, frames: list[int]) -> list[Path]:
    """Write the control maps of `frames`, normalised with the whole shot's statistics.

    Frames whose maps exist and were made with the current statistics are skipped (resume).
    """
    stats, reused = _shot_stats(shot)
    written = []
    for done, frame in enumerate(frames, start=1):
        paths = [map_path(shot, kind, frame) for kind in KINDS]
        if not (reused and all(p.is_file() for p in paths)):
            frame_passes = passes.read(shot.pass_path(frame), frame)
            files.write_png(paths[0], depth_image(frame_passes.depth, stats))
            files.write_png(paths[1], normal_image(frame_passes.normal, shot.cameras[frame].matrix_world))
            files.write_png(paths[2], clay_image(frame_passes.combined))
            written += paths
        protocol.progress("control", done, len(frames), f"frame {frame}")
    return written


def _shot_stats(shot: Shot) -> tuple[DepthStats, bool]:
    """Load control/stats.json if it was made from the current passes, else recompute it.

    Returns the stats and whether existing maps made with them can be kept.
    """
    stats_path = shot.directory / "control" / "stats.json"
    source = {str(f): files.sha256_file(shot.pass_path(f)) for f in shot.frames if shot.pass_path(f).is_file()}
    method = {"percentiles": list(PERCENTILES), "background_depth": BACKGROUND_DEPTH, "code": __version__}
    if stats_path.is_file():
        saved = json.loads(stats_path.read_text(encoding="utf-8"))
        if saved.get("passes_sha256") == source and saved.get("method") == method:
            return DepthStats(**saved["depth"]), True

    depths = [passes.read(shot.pass_path(f), f).depth for f in shot.frames]
    stats = depth_stats(depths)
    for kind in KINDS:  # maps made with other stats would mix two normalisations in one shot
        for stale in (shot.directory / "control" / kind).glob("*.png"):
            stale.unlink()
    files.write_json(
        stats_path,
        {
            "schema": STATS_SCHEMA,
            "depth": {"disparity_low": stats.disparity_low, "disparity_high": stats.disparity_high},
            "method": method,
            "passes_sha256": source,
        },
    )
    return stats, False


def depth_stats(depths: list[np.ndarray]) -> DepthStats:
    disparity = np.concatenate([1.0 / d[d < BACKGROUND_DEPTH] for d in depths])
    if disparity.size == 0:
        return DepthStats(0.0, 1.0)
    low, high = np.percentile(disparity, PERCENTILES)
    if high <= low:  # a single flat depth: show it as near rather than divide by zero
        low = high - 1e-6 if high > 0 else 0.0
        high = max(high, low + 1e-6)
    return DepthStats(float(low), float(high))


def normalised_disparity(depth: np.ndarray, stats: DepthStats) -> np.ndarray:
    """Float disparity in [0, 1], near = 1, background 0."""
    foreground = depth < BACKGROUND_DEPTH
    disparity = np.where(foreground, 1.0 / np.where(foreground, depth, 1.0), 0.0)
    scaled = (disparity - stats.disparity_low) / (stats.disparity_high - stats.disparity_low)
    return np.where(foreground, np.clip(scaled, 0.0, 1.0), 0.0).astype(np.float32)


def depth_image(depth: np.ndarray, stats: DepthStats) -> Image.Image:
    values = np.round(normalised_disparity(depth, stats) * 65535.0).astype(np.uint16)
    return Image.fromarray(values)  # uint16 -> mode "I;16", a 16-bit grey PNG


def camera_space_normals(normal_world: np.ndarray, matrix_world) -> np.ndarray:
    """n_cam = R⁻¹ n_world, R the camera's world rotation (x right, y up, z towards the viewer)."""
    rotation = np.asarray(matrix_world, dtype=np.float64)[:3, :3]
    rotation = rotation / np.linalg.norm(rotation, axis=0)  # drop any object scale
    # R is orthonormal, so R⁻¹ = Rᵀ; for row vectors n_cam = n_world · R.
    return (normal_world.astype(np.float64) @ rotation).astype(np.float32)


def normal_image(normal_world: np.ndarray, matrix_world) -> Image.Image:
    n = camera_space_normals(normal_world, matrix_world)
    # normalbae (lllyasviel/ControlNet-v1-1-nightly, annotator/normalbae): red is flipped.
    rgb = np.stack([(1.0 - n[..., 0]) / 2.0, (n[..., 1] + 1.0) / 2.0, (n[..., 2] + 1.0) / 2.0], axis=-1)
    return Image.fromarray(np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8))


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    # IEC 61966-2-1 sRGB transfer function.
    c = np.clip(linear, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1.0 / 2.4) - 0.055)


def clay_image(combined: np.ndarray) -> Image.Image:
    # Blender's Combined is premultiplied by alpha, so RGB alone is the clay over black.
    srgb = linear_to_srgb(combined[..., :3])
    return Image.fromarray(np.round(srgb * 255.0).astype(np.uint8))


def load_depth(shot: Shot, frame: int) -> np.ndarray:
    """The saved depth control map as float [0, 1]."""
    return np.asarray(Image.open(map_path(shot, "depth", frame)), dtype=np.float32) / 65535.0
