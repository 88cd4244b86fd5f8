"""Triggers as data: `[[triggers]]` tables in a preset, each with a kind and a start frame.

    [[triggers]]
    kind = "column_removal"     # pull out columns of one storey
    frame = 30
    storey = 0
    columns = [[0, 0], [1, 0]]  # grid (i, j); [] = the whole front row (j = 0)

Kinds and their keys are the dataclasses below; nothing happens before `frame`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..checks import MAX_FRAME, shown, suggestion, unknown


def _range(lo=None, hi=None):
    return {"min": lo, "max": hi}


_FRAME = _range(0, MAX_FRAME)  # and inside the simulated frames: see check()


@dataclass(frozen=True)
class ColumnRemoval:
    kind: str = "column_removal"
    frame: int = field(default=30, metadata=_FRAME)
    storey: int = field(default=0, metadata=_range(0, 59))
    columns: tuple = ()          # ((i, j), ...); empty: the front row j = 0
    drop_frames: int = field(default=2, metadata=_range(1, 100))  # a charge clears a column in ~0.1 s


# An impactor moves on its keys for this many frames before its trigger frame, then is
# released: Bullet keeps the velocity of its last animated step (addon/scene/destruction/triggers.py).
IMPACT_APPROACH_FRAMES = 2


@dataclass(frozen=True)
class Impact:
    kind: str = "impact"
    frame: int = field(default=30, metadata=_FRAME)
    mass_kg: float = field(default=5000.0, metadata=_range(1.0, 1e7))
    radius_m: float = field(default=1.0, metadata=_range(0.05, 20.0))
    speed_m_s: float = field(default=15.0, metadata=_range(0.1, 500.0))
    direction: tuple = (0.0, 1.0, 0.0)   # travel direction; hits the building's face it points at
    height_m: float = field(default=2.0, metadata=_range(0.0, 500.0))  # height of the impact point
    offset_m: float = field(default=0.0, metadata=_range(-500.0, 500.0))  # sideways from the centre line


@dataclass(frozen=True)
class Shake:
    kind: str = "shake"
    frame: int = field(default=30, metadata=_FRAME)
    amplitude_m: float = field(default=0.3, metadata=_range(0.0, 10.0))
    frequency_hz: float = field(default=1.5, metadata=_range(0.05, 20.0))
    duration_s: float = field(default=4.0, metadata=_range(0.05, 120.0))
    direction: tuple = (1.0, 0.0, 0.0)


@dataclass(frozen=True)
class Charges:
    kind: str = "charges"
    frame: int = field(default=30, metadata=_FRAME)
    centers: tuple = ()                  # ((x, y, z), ...) metres
    radius_m: float = field(default=1.5, metadata=_range(0.05, 100.0))
    strength: float = field(default=5e5, metadata=_range(0.0, 1e9))  # force field strength pushing outwards


KINDS = {cls.kind: cls for cls in (ColumnRemoval, Impact, Shake, Charges)}
Trigger = ColumnRemoval | Impact | Shake | Charges


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _vectors(where, value, length, problems, many=True):
    items = value if many else [value]
    if not isinstance(value, list) or not all(isinstance(v, list) and len(v) == length and all(map(_number, v))
                                              for v in items):
        shape = f"a list of [{', '.join('xyz'[:length] if length == 3 else 'ij')}]" if many else f"[x, y, z]"
        problems.append(f"{where}: expected {shape}, got {shown(value)}")
        return None
    if not all(math.isfinite(x) for v in items for x in v):
        problems.append(f"{where}: every number must be finite, got {shown(value)}")
        return None
    return tuple(tuple(v) for v in items) if many else tuple(float(x) for x in value)


def parse(data, problems: list[str]) -> tuple:
    """The `[[triggers]]` array as trigger dataclasses; problems named `triggers[k].key`."""
    if data is None:
        return ()
    if not isinstance(data, list):
        problems.append("triggers: expected [[triggers]] tables (an array), got a single table")
        return ()
    out = []
    for k, table in enumerate(data):
        where = f"triggers[{k}]"
        if not isinstance(table, dict):
            problems.append(f"{where}: expected a table, got {shown(table)}")
            continue
        kind = table.get("kind")
        if kind not in KINDS:
            problems.append(f"{where}.kind: {shown(kind)} is not one of {', '.join(map(repr, KINDS))}"
                            f"{suggestion(kind, KINDS)}")
            continue
        cls = KINDS[kind]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for key, value in table.items():
            if key not in fields:
                problems.append(unknown(f"{where}.{key}", f"key for {kind}", fields))
            elif key == "kind":
                continue
            elif key == "columns":
                values[key] = _vectors(f"{where}.columns", value, 2, problems)
            elif key == "centers":
                values[key] = _vectors(f"{where}.centers", value, 3, problems)
            elif key == "direction":
                vec = _vectors(f"{where}.direction", value, 3, problems, many=False)
                if vec is not None and math.hypot(*vec) == 0:
                    problems.append(f"{where}.direction: must not be [0, 0, 0]")
                values[key] = vec
            else:
                meta = fields[key].metadata
                want_int = fields[key].type in ("int", int)
                ok = _number(value) and (isinstance(value, int) or not want_int)
                if not ok:
                    problems.append(f"{where}.{key}: expected {'an integer' if want_int else 'a number'}, "
                                    f"got {shown(value)}")
                elif not math.isfinite(value) or not meta["min"] <= value <= (meta["max"] if meta["max"] is not None
                                                                             else math.inf):
                    hi = meta["max"] if meta["max"] is not None else "no maximum"
                    problems.append(f"{where}.{key}: {value} is outside the allowed range [{meta['min']}, {hi}]")
                else:
                    values[key] = value if want_int else float(value)
        if all(v is not None for v in values.values()):
            out.append(cls(**values))
    return tuple(out)


def to_list(triggers) -> list[dict]:
    out = []
    for t in triggers:
        d = dataclasses.asdict(t)
        for key in ("columns", "centers"):
            if key in d:
                d[key] = [list(v) for v in d[key]]
        if "direction" in d:
            d["direction"] = list(d["direction"])
        out.append(d)
    return out


def check(triggers, preset) -> list[str]:
    """Problems that need the building: storeys and columns that exist, frames in the shot."""
    problems = []
    b = preset.building
    for k, t in enumerate(triggers):
        where = f"triggers[{k}]"
        # The simulation runs from the pre-roll's first frame to the shot's last: a trigger
        # outside it would never fire (scene/destruction/physics.py steps only those frames).
        start = preset.shot.frame_start - preset.simulation.preroll_frames
        simulated = f"use a frame from {start} to {preset.shot.frame_end}"
        first = start + IMPACT_APPROACH_FRAMES
        if t.frame > preset.shot.frame_end:
            problems.append(f"{where}.frame: {t.frame} is after shot.frame_end {preset.shot.frame_end}, outside "
                            f"the shot; {simulated}")
        elif t.frame < start:
            problems.append(f"{where}.frame: {t.frame} is before the first simulated frame {start} "
                            f"(shot.frame_start {preset.shot.frame_start} minus simulation.preroll_frames "
                            f"{preset.simulation.preroll_frames}), outside the shot; {simulated}")
        elif isinstance(t, Impact) and t.frame < first:
            problems.append(f"{where}.frame: {t.frame} is too early for an impact: the ball needs "
                            f"{IMPACT_APPROACH_FRAMES} simulated frames to reach its speed, so use frame {first} or later")
        if isinstance(t, ColumnRemoval):
            if t.storey >= b.storeys:
                problems.append(f"{where}.storey: {t.storey} does not exist (0 to {b.storeys - 1})")
            for i, j in t.columns:
                if not (0 <= i <= b.bays_x and 0 <= j <= b.bays_y and i == int(i) and j == int(j)):
                    problems.append(f"{where}.columns: [{i}, {j}] is not a column (i in 0..{b.bays_x}, "
                                    f"j in 0..{b.bays_y})")
    return problems
