"""Reading Blender's multilayer EXR passes (docs/contract.md, "passes/NNNN.exr").

Channels are matched by pass name and component, never by part order: Blender 5.0 writes one
part per pass (`ViewLayer.Depth.Z`), 4.x writes a single part, and the OpenEXR Python binding
groups a pass's R,G,B,A channels into one (H, W, 4) array under the pass name.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .protocol import BackendError

# Blender 5.0 renamed the object index pass; 4.x writes "IndexOB".
OBJECT_INDEX_NAMES = ("Object Index", "IndexOB")


@dataclass(frozen=True)
class FramePasses:
    depth: np.ndarray  # (H, W) camera-space planar z, scene units; background ~1e10
    normal: np.ndarray  # (H, W, 3) world-space normal
    combined: np.ndarray  # (H, W, 4) linear RGBA clay render
    vector: np.ndarray | None  # (H, W, 4) pixels, y up; absent when the pass was not rendered
    object_index: np.ndarray | None  # (H, W) object pass index, see shot.json "roles"


def read(path: Path, frame: int) -> FramePasses:
    import OpenEXR

    rerender = f"Re-render the passes for frame {frame} (Rubble > Passes with that frame range), then run again."
    if not path.is_file():
        raise BackendError("missing_pass", f"Pass file for frame {frame} is missing: {path}.", rerender)
    try:
        parts = OpenEXR.File(str(path)).parts
        components = _components(part.channels for part in parts)
    except Exception as exc:  # the binding raises bare RuntimeError/OSError subtypes for damaged files
        raise BackendError("corrupt_pass", f"Pass file for frame {frame} cannot be read: {path} ({exc}).", rerender) from exc

    def find(names: tuple[str, ...], component: str, required: bool = True) -> np.ndarray | None:
        for name in names:
            if (name, component) in components:
                return components[(name, component)]
        if required:
            found = sorted(f"{n}.{c}" for n, c in components)
            raise BackendError(
                "missing_channel",
                f"{path} has no {names[0]}.{component} channel (found: {', '.join(found)}).",
                f"Enable the {names[0]} pass in the view layer and {rerender[0].lower()}{rerender[1:]}",
            )
        return None

    vector = [find(("Vector",), c, required=False) for c in "XYZW"]
    return FramePasses(
        depth=find(("Depth",), "Z"),
        normal=np.stack([find(("Normal",), c) for c in "XYZ"], axis=-1),
        combined=np.stack([find(("Combined",), c) for c in "RGBA"], axis=-1),
        vector=np.stack(vector, axis=-1) if all(v is not None for v in vector) else None,
        object_index=find(OBJECT_INDEX_NAMES, "X", required=False),
    )


def _components(channel_dicts) -> dict[tuple[str, str], np.ndarray]:
    """Map (pass name, component) -> float32 (H, W) array, whatever the layer prefix."""
    out = {}
    for channels in channel_dicts:
        for key, channel in channels.items():
            pixels = np.asarray(channel.pixels, dtype=np.float32)
            if pixels.ndim == 3:  # RGB(A) grouped by the binding under the pass name
                name = key.split(".")[-1]
                for index, component in enumerate("RGBA"[: pixels.shape[-1]]):
                    out[(name, component)] = pixels[..., index]
            else:
                *prefix, component = key.split(".")
                if prefix:
                    out[(prefix[-1], component)] = pixels
    return out
