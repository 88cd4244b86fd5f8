"""Reading Blender's multilayer EXR passes (docs/contract.md, "passes/NNNN.exr").

Channels are matched by pass name and component, never by part order: Blender 5.0 writes one
part per pass (`ViewLayer.Depth.Z`), 4.x writes a single part, and the OpenEXR Python binding
groups a pass's R,G,B,A channels into one (H, W, 4) array under the pass name.

A file is read with one read call; an uncompressed one is parsed without the binding
(exr_uncompressed.py: its channels are views of those bytes), any other goes to the binding.
"""

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import exr_uncompressed, files
from .protocol import BackendError

# Blender 5.0 renamed the object index pass; 4.x writes "IndexOB".
OBJECT_INDEX_NAMES = ("Object Index", "IndexOB")


@dataclass(frozen=True)
class FramePasses:
    """The passes as the binding decodes them, copied only where a map needs them together."""

    depth: np.ndarray  # (H, W) float32 camera-space planar z, scene units; background ~1e10
    normal: np.ndarray  # (H, W, 3) float32 world-space normal
    combined: np.ndarray  # (H, W, 4) linear RGBA clay render: float16 when stored as half, else float32
    vector: tuple[np.ndarray, ...]  # X, Y, Z, W, each (H, W) float32 pixels, y up: XY towards the previous frame, ZW minus towards the next
    object_index: np.ndarray  # (H, W) float32 object pass index, see shot.json "roles"
    fingerprint: str | None = None  # the file's (files.fingerprint), when asked for
    uncompressed: bool = False  # read by exr_uncompressed: read_depth can take Depth alone from the file


def read(path: Path, frame: int, with_fingerprint: bool = False) -> FramePasses:
    """The frame's passes; with_fingerprint: also the file's fingerprint, from the bytes read once for both."""
    rerender = _rerender(frame)
    if not path.is_file():
        raise BackendError("missing_pass", f"Pass file for frame {frame} is missing: {path}.", rerender)
    data = path.read_bytes()  # one read: the binding given a path reads each scanline apart
    channel_dicts = exr_uncompressed.read(data)
    uncompressed = channel_dicts is not None
    if channel_dicts is None:
        channel_dicts = _read_with_binding(data, path, frame, rerender)
    components, grouped = _components(channel_dicts)

    def find(names: tuple[str, ...], component: str) -> np.ndarray:
        for name in names:
            if (name, component) in components:
                return components[(name, component)]
        found = sorted(f"{n}.{c}" for n, c in components)
        raise BackendError(
            "missing_channel",
            f"{path} has no {names[0]}.{component} channel (found: {', '.join(found)}).",
            f"Enable the {names[0]} pass in the view layer and {rerender[0].lower()}{rerender[1:]}",
        )

    def finite(name: str, components: str) -> list[np.ndarray]:
        channels = [np.asarray(find((name,), component), dtype=np.float32) for component in components]
        for component, values in zip(components, channels):
            _check_finite(values, path, frame, f"{name}.{component}")
        return channels

    depth = finite("Depth", "Z")[0]
    normal = np.stack(finite("Normal", "XYZ"), axis=-1)
    vector = tuple(finite("Vector", "XYZW"))
    combined = grouped.get("Combined")
    if combined is None or combined.shape[-1] != 4:  # not grouped by the binding: gather the four channels
        combined = np.stack([find(("Combined",), c) for c in "RGBA"], axis=-1)  # stays half when all four are
    if combined.dtype != np.float16:
        combined = np.asarray(combined, dtype=np.float32)
    object_index = np.asarray(find(OBJECT_INDEX_NAMES, "X"), dtype=np.float32)
    return FramePasses(depth=depth, normal=normal, combined=combined, vector=vector, object_index=object_index,
                       fingerprint=files.fingerprint(data) if with_fingerprint else None,
                       uncompressed=uncompressed)


def read_depth(path: Path, frame: int) -> np.ndarray:
    """The frame's Depth alone: from an uncompressed file only its part's bytes are read (0.6 MB
    of 7.7 at 512x288), with the same finite check as read(); any other file is read whole."""
    part = exr_uncompressed.read_part(path, "Depth.Z") if path.is_file() else None
    if part is None:
        return read(path, frame).depth
    (depth,) = (np.asarray(values, dtype=np.float32) for name, values in part.items()
                if name == "Depth.Z" or name.endswith(".Depth.Z"))
    _check_finite(depth, path, frame, "Depth.Z")
    return depth


def _rerender(frame: int) -> str:
    return f"Re-render the passes for frame {frame} (Rubble > Passes with that frame range), then run again."


def _check_finite(values: np.ndarray, path: Path, frame: int, channel: str) -> None:
    # A NaN or inf anywhere makes the float32 sum one (a sum that overflows from finite values is
    # sorted out by the exact check below).
    if np.isfinite(values.sum()):
        return
    bad = ~np.isfinite(values)
    if bad.any():
        y, x = (int(v) for v in np.argwhere(bad)[0])
        raise BackendError(
            "non_finite_pass",
            f"{path} (frame {frame}): channel {channel} has {int(bad.sum())} NaN or infinite "
            f"pixels (first at x={x}, y={y} from the top left).",
            _rerender(frame),
        )


def _read_with_binding(data: bytes, path: Path, frame: int, rerender: str) -> list[dict[str, np.ndarray]]:
    """Any EXR the binding reads (compressed, tiled...), checked for damage."""
    import OpenEXR

    damaged = f"Pass file for frame {frame} is damaged (truncated or corrupt): {path}"
    # A part whose pixels cannot be read is dropped by the binding with a printed warning, not
    # an exception (OpenEXR 3.3 Python binding), so a cut-off file would look like a missing pass.
    warnings = io.StringIO()
    try:
        declared = len(OpenEXR.File(io.BytesIO(data), header_only=True).parts)
        with contextlib.redirect_stdout(warnings):
            parts = OpenEXR.File(io.BytesIO(data)).parts
        channel_dicts = [{key: channel.pixels for key, channel in part.channels.items()} for part in parts]
    except Exception as exc:  # the binding raises bare RuntimeError/OSError subtypes for damaged files
        raise BackendError("corrupt_pass", f"{damaged} ({exc}).", rerender) from exc
    if len(parts) != declared or warnings.getvalue().strip():
        detail = warnings.getvalue().strip().replace("\n", "; ") or f"{len(parts)} of {declared} parts readable"
        raise BackendError("corrupt_pass", f"{damaged} ({detail}).", rerender)
    return channel_dicts


def _components(channel_dicts) -> tuple[dict[tuple[str, str], np.ndarray], dict[str, np.ndarray]]:
    """(pass name, component) -> (H, W) array, whatever the layer prefix, float32 or float16 as
    stored; and pass name -> (H, W, C) array for the passes the binding grouped (RGB, RGBA)."""
    out, grouped = {}, {}
    for channels in channel_dicts:
        for key, pixels in channels.items():
            if pixels.dtype not in (np.float16, np.float32):
                pixels = pixels.astype(np.float32)
            if pixels.ndim == 3:  # RGB(A) grouped by the binding under the pass name
                name = key.split(".")[-1]
                grouped[name] = pixels
                for index, component in enumerate("RGBA"[: pixels.shape[-1]]):
                    out[(name, component)] = pixels[..., index]
            else:
                *prefix, component = key.split(".")
                if prefix:
                    out[(prefix[-1], component)] = pixels
    return out, grouped
