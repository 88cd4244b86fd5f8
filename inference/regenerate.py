"""Masked regeneration (preset `[regenerate]`, issue 18 item 4): only some roles are regenerated.

With `roles` listed, the delivered frames (inference/upscale.py: the shot's resolution, every
format) are composited over a plate (the clay render, control/clay/, or an image sequence the
artist names) with the feathered union of those roles'
masks (control/mask/<role>/NNNN.png, masks.py): a pixel whose feathered mask is 0 is the plate's
pixel exactly, one whose mask is 1 the generated pixel exactly, and the edge mixes them linearly.
frames/ holds the composite; the unmasked generated frames and the feathered masks are kept
(regenerate/unmasked/, regenerate/mask/) so the artist can blend again elsewhere. `roles = []`
(the default) regenerates every pixel: no plate, frames/ as before.

Feathering: the union mask (1 inside) is box-filtered, (2r + 1)² pixels with r = feather_px,
edges replicated: the mask ramps from 0 at r pixels outside the roles' edge to 1 at r pixels
inside, and is exactly 0 (1) farther out (in), since the box's integer counts are exact.
"""

import hashlib
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .protocol import BackendError

CLAY = "clay"
FEATHER_RANGE = (0, 256)
# An image sequence: one run of '#' is the zero-padded frame number (Blender's own convention).
FRAME_RUN = re.compile(r"#+")


@dataclass(frozen=True)
class Regenerate:
    roles: tuple[str, ...] = ()  # () = every pixel is regenerated (no plate)
    plate: str = CLAY  # "clay" or a path pattern with #### (absolute, or relative to the shot directory)
    feather_px: int = 4


def settings(table: dict | None) -> Regenerate:
    """The preset's [regenerate] table (absent in older shots: every pixel regenerated), validated."""
    values = {**asdict(Regenerate()), **(table or {})}
    unknown = set(values) - set(asdict(Regenerate()))
    if unknown:
        raise ValueError(f"regenerate has unknown keys {sorted(unknown)}")
    if not isinstance(values["roles"], (list, tuple)) or not all(isinstance(r, str) for r in values["roles"]):
        raise ValueError(f"regenerate roles {values['roles']!r} must be a list of role names")
    result = Regenerate(roles=tuple(values["roles"]), plate=str(values["plate"]), feather_px=int(values["feather_px"]))
    if not FEATHER_RANGE[0] <= result.feather_px <= FEATHER_RANGE[1]:
        raise ValueError(f"regenerate feather_px {result.feather_px} must be between {FEATHER_RANGE[0]} and {FEATHER_RANGE[1]}")
    if result.plate != CLAY and len(FRAME_RUN.findall(result.plate)) != 1:
        raise ValueError(f"regenerate plate {result.plate!r} must be \"clay\" or a path with one run of # for the frame number")
    return result


def active(shot) -> bool:
    return bool(shot.regenerate.roles)


def unmasked_path(shot, frame: int) -> Path:
    return shot.directory / "regenerate" / "unmasked" / f"{frame:04d}.png"


def mask_path(shot, frame: int) -> Path:
    return shot.directory / "regenerate" / "mask" / f"{frame:04d}.png"


def plate_path(shot, frame: int) -> Path:
    from . import control

    if shot.regenerate.plate == CLAY:
        return control.map_path(shot, CLAY, frame)
    pattern = Path(shot.regenerate.plate)
    pattern = pattern if pattern.is_absolute() else shot.directory / pattern
    return Path(FRAME_RUN.sub(lambda run: f"{frame:0{len(run.group())}d}", str(pattern)))


def check(shot) -> None:
    """Refuse, before any weights load, roles the shot has no masks for and a plate that does not fit."""
    if not active(shot):
        return
    from PIL import Image

    from . import control

    known = control.roles(shot)
    unknown = [r for r in shot.regenerate.roles if r not in known]
    if unknown:
        raise BackendError(
            "unknown_role",
            f"[regenerate] roles {unknown} are not roles of this shot (its roles: {', '.join(known)}).",
            "List roles from that set in [regenerate] roles (artist roles come from the objects' rubble_role "
            "property), or leave roles = [] to regenerate every pixel.",
        )
    if shot.regenerate.plate == CLAY:
        return  # derived with the control maps
    plate = shot.regenerate.plate
    absent = [f for f in shot.frames if not plate_path(shot, f).is_file()]
    if absent:
        first = plate_path(shot, absent[0])
        raise BackendError(
            "bad_plate",
            f"The plate {plate!r} lacks {len(absent)} of the shot's {len(shot.frames)} frames "
            f"({shot.frame_start}-{shot.frame_end}); the first missing is {first}.",
            "Render or copy the plate for every frame of the shot (#### is the frame number, zero-padded), "
            "fix [regenerate] plate (absolute, or relative to the shot directory), or use plate = \"clay\".",
        )
    for frame in shot.frames:
        with Image.open(plate_path(shot, frame)) as image:
            size = image.size
        if size != tuple(shot.resolution):
            raise BackendError(
                "bad_plate",
                f"Plate frame {plate_path(shot, frame)} is {size[0]}x{size[1]}, but the shot's frames are "
                f"{shot.resolution[0]}x{shot.resolution[1]}.",
                "Render the plate at the shot's [shot] resolution (or resize it) so that it lines up with the masks.",
            )


def record(shot) -> dict | None:
    """What the composite depends on beyond the windows (provenance.json "regenerate"); None when off."""
    if not active(shot):
        return None
    out = {**asdict(shot.regenerate), "roles": list(shot.regenerate.roles),
           "outputs": {"unmasked": "regenerate/unmasked/", "mask": "regenerate/mask/"}}
    if shot.regenerate.plate != CLAY:  # the clay follows the passes, which the windows already record
        digest = hashlib.sha256()
        for frame in shot.frames:
            digest.update(plate_path(shot, frame).read_bytes())
        out["plate_sha256"] = digest.hexdigest()
    return out


def feather(inside: np.ndarray, radius: int) -> np.ndarray:
    """The mask `inside` (H, W bool) box-filtered over (2·radius + 1)² pixels, edges replicated: float64 in [0, 1],
    exactly 0 or 1 where the box holds no or only masked pixels (integer counts, one division)."""
    counts = inside.astype(np.int64)
    if radius == 0:
        return counts.astype(np.float64)
    width = 2 * radius + 1
    for axis in (0, 1):  # separable: rows, then columns; running sums give each box's count
        lines = np.moveaxis(counts, axis, 0)
        padded = np.concatenate([lines[:1].repeat(radius, 0), lines, lines[-1:].repeat(radius, 0)])
        summed = np.concatenate([np.zeros_like(lines[:1]), np.cumsum(padded, axis=0)])
        counts = np.moveaxis(summed[width:] - summed[:-width], 0, axis)
    return counts / float(width * width)


def union_mask(shot, frame: int) -> np.ndarray:
    from PIL import Image

    from . import control

    union = np.zeros((shot.resolution[1], shot.resolution[0]), bool)
    for role in shot.regenerate.roles:
        path = control.mask_path(shot, role, frame)
        if not path.is_file():
            raise BackendError("missing_mask", f"No mask {path} for role {role!r}.",
                               f"Derive the control maps: python -m inference control {shot.directory}")
        union |= np.asarray(Image.open(path)) > 127
    return union


def frame_inputs(shot, frame: int) -> dict | None:
    """What one delivered frame's composite depends on (inference/upscale.py records it); None when off."""
    if not active(shot):
        return None
    from . import control, files

    return {**asdict(shot.regenerate), "roles": list(shot.regenerate.roles),
            "plate_sha256": files.sha256_file(plate_path(shot, frame)),
            "mask_sha256": {role: files.sha256_file(control.mask_path(shot, role, frame))
                            for role in shot.regenerate.roles if control.mask_path(shot, role, frame).is_file()}}


class FrameComposite:
    """One delivered frame over the plate: the feathered mask and the plate, read once, applied to every
    delivered format (upscale.run), so frames/, frames_png16/ and frames_exr_half/ all hold the composite."""

    def __init__(self, shot, frame: int):
        from PIL import Image

        self.shot, self.frame = shot, frame
        self.plate = np.asarray(Image.open(plate_path(shot, frame)).convert("RGB"), dtype=np.float64) / 255.0
        self.alpha = feather(union_mask(shot, frame), shot.regenerate.feather_px)
        if self.plate.shape[:2] != self.alpha.shape:
            raise BackendError(
                "bad_plate",
                f"Frame {frame}: plate {self.plate.shape[1]}x{self.plate.shape[0]}, masks "
                f"{self.alpha.shape[1]}x{self.alpha.shape[0]}: they must match.",
                "Render the passes and the plate at the shot's [shot] resolution.",
            )

    def over_plate(self, generated: np.ndarray, scale: float) -> np.ndarray:
        """`generated` (H, W, 3) in [0, scale] -> plate + mask × (generated − plate), same scale: where the
        feathered mask is 0 the plate's pixel exactly, where it is 1 the generated pixel exactly."""
        plate = self.plate * scale
        return plate + self.alpha[..., None] * (np.asarray(generated, dtype=np.float64) - plate)

    def keep_unmasked(self, generated8: np.ndarray, text: dict) -> list[Path]:
        """The delivered frame before the composite and the feathered mask, for re-blending elsewhere."""
        from PIL import Image

        from . import files

        files.write_png(unmasked_path(self.shot, self.frame), Image.fromarray(generated8), text)
        files.write_png(mask_path(self.shot, self.frame), Image.fromarray(np.round(self.alpha * 255.0).astype(np.uint8)))
        return [unmasked_path(self.shot, self.frame), mask_path(self.shot, self.frame)]
