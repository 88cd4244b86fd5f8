"""The preset section `[regenerate]`: which roles are regenerated, and the plate the rest comes from.

The backend composites the generated frames over the plate with the feathered union of the
roles' masks (inference/regenerate.py); `roles = []` regenerates every pixel, as before. Roles are
Rubble's own (shot_manifest.ROLE_INDEX) or an artist's (`rubble_role` on their objects, scene/roles.py):
the artist's exist only once the shot is built, so here a name is refused when it is malformed or a
near miss of one of Rubble's (a typo), and the backend checks every name against the shot's role map.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from .shot_manifest import ARTIST_ROLE_NAME, ROLE_INDEX

CLAY = "clay"
FRAME_RUN = re.compile(r"#+")  # the zero-padded frame number in an image sequence's path (Blender's convention)
MAX_ROLES = 16  # Rubble's 3 roles and the 12 pass indices reserved for artist roles (scene/roles.py), and room


@dataclass(frozen=True)
class RegenerateSettings:
    # Roles whose pixels are regenerated; [] = every pixel (no plate).
    roles: tuple[str, ...] = field(default=(), metadata={"max_length": 32, "max_items": MAX_ROLES,
                                                        "item": "role names (text in quotes)"})
    # "clay", or an image sequence with #### for the frame number (absolute, or relative to the shot directory).
    plate: str = field(default=CLAY, metadata={"max_length": 1024})
    feather_px: int = field(default=4, metadata={"min": 0, "max": 256})  # edge ramp: this many pixels each side


SECTIONS = {"regenerate": RegenerateSettings}


def cross_checks(preset, check_local: bool = True) -> list[str]:
    settings = preset.regenerate
    problems = [problem for role in settings.roles if (problem := _role_problem(role))]
    repeated = sorted({role for role in settings.roles if settings.roles.count(role) > 1})
    if repeated:
        problems.append(f"regenerate.roles: {', '.join(map(repr, repeated))} listed more than once")
    if settings.plate != CLAY:
        problems += _plate_problems(settings.plate, preset.shot.frame_start, preset.shot.frame_end, check_local)
    return problems


def _role_problem(role: str) -> str | None:
    if role in ROLE_INDEX:
        return None
    if not ARTIST_ROLE_NAME.fullmatch(role):
        return (f"regenerate.roles: unknown role {role!r}: Rubble's roles are {', '.join(ROLE_INDEX)}, and an "
                "artist role is 1-32 letters, digits, '_' or '-' (the rubble_role property of their objects)")
    close = difflib.get_close_matches(role, list(ROLE_INDEX), n=1, cutoff=0.7)
    if close:
        return (f"regenerate.roles: unknown role {role!r}; did you mean {close[0]!r}? (Rubble's roles: "
                f"{', '.join(ROLE_INDEX)}; an artist role must not look like one of them)")
    return None


def _plate_problems(plate: str, first: int, last: int, check_local: bool) -> list[str]:
    runs = FRAME_RUN.findall(plate)
    if len(runs) != 1:
        return [f"regenerate.plate: {plate!r} must be \"clay\" or an image sequence path with one run of # for the "
                "frame number, e.g. \"/plates/street.####.png\""]
    path = Path(plate)
    if not check_local or not path.is_absolute():  # relative: to the shot directory, checked by the backend
        return []
    frames = [path.parent / FRAME_RUN.sub(f"{f:0{len(runs[0])}d}", path.name) for f in range(first, last + 1)]
    absent = [p for p in frames if not p.is_file()]
    if absent:
        return [f"regenerate.plate: {len(absent)} of the shot's {len(frames)} frames ({first}-{last}) are missing, "
                f"the first {absent[0]}; render the plate for every frame or fix the path"]
    return []
