"""Controls as data: `[[controls]]` tables in a preset, one ControlNet each, run together.

    [[controls]]
    kind = "depth"                                  # which control map conditions it
    model = "lllyasviel/control_v11f1p_sd15_depth"  # Hugging Face id, or a directory on this machine
    revision = "main"
    weight = 1.0                                    # controlnet_conditioning_scale
    guidance_start = 0.0                            # fraction of the steps it acts over
    guidance_end = 1.0

The backend loads them as one diffusers MultiControlNetModel, in the preset's order, and feeds
each its kind's control maps (docs/contract.md, "What the backend derives").
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

# Each kind's maps and the SD1.5 ControlNet 1.1 trained on them (lllyasviel/ControlNet-v1-1-nightly).
# depth, normal: derived from the passes; canny, lineart: detectors run on the clay render.
DEFAULT_MODELS = {
    "depth": "lllyasviel/control_v11f1p_sd15_depth",
    "normal": "lllyasviel/control_v11p_sd15_normalbae",
    "canny": "lllyasviel/control_v11p_sd15_canny",
    "lineart": "lllyasviel/control_v11p_sd15_lineart",
}
KINDS = tuple(DEFAULT_MODELS)
# One control per kind: two ControlNets on the same map are one ControlNet with a summed weight in
# all but the training, and maps, window hashes and provenance are keyed by kind.
MAX_CONTROLS = len(KINDS)


def _range(lo, hi):
    return {"min": lo, "max": hi}


@dataclass(frozen=True)
class Control:
    kind: str = "depth"
    model: str = ""  # empty: DEFAULT_MODELS[kind]
    revision: str = "main"
    weight: float = field(default=1.0, metadata=_range(0.0, 2.0))
    guidance_start: float = field(default=0.0, metadata=_range(0.0, 1.0))
    guidance_end: float = field(default=1.0, metadata=_range(0.0, 1.0))

    def __post_init__(self):
        if not self.model and self.kind in DEFAULT_MODELS:
            object.__setattr__(self, "model", DEFAULT_MODELS[self.kind])


DEFAULT_CONTROLS = (Control("depth"), Control("normal"))


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse(data, problems: list[str]) -> tuple[Control, ...]:
    """The `[[controls]]` array as Control dataclasses; problems named `controls[k].key`.
    Absent: the default depth + normal pair."""
    if data is None:
        return DEFAULT_CONTROLS
    if not isinstance(data, list):
        problems.append("controls: expected [[controls]] tables (an array), got a single table")
        return DEFAULT_CONTROLS
    if not 1 <= len(data) <= MAX_CONTROLS:
        problems.append(f"controls: {len(data)} controls; list 1 to {MAX_CONTROLS} [[controls]] tables "
                        f"(one per kind: {', '.join(KINDS)})")
    fields = {f.name: f for f in dataclasses.fields(Control)}
    out, seen = [], {}
    for k, table in enumerate(data):
        where = f"controls[{k}]"
        if not isinstance(table, dict):
            problems.append(f"{where}: expected a table, got {table!r}")
            continue
        kind = table.get("kind")
        if kind not in KINDS:
            problems.append(f"{where}.kind: {kind!r} is not one of {', '.join(map(repr, KINDS))}")
            continue
        if kind in seen:
            problems.append(f"{where}.kind: {kind!r} is already controls[{seen[kind]}]; each kind once "
                            "(raise that control's weight instead)")
        seen.setdefault(kind, k)
        values = {"kind": kind}
        for key, value in table.items():
            if key == "kind":
                continue
            if key not in fields:
                problems.append(f"{where}.{key}: unknown key (known: {', '.join(fields)})")
            elif fields[key].type in ("str", str):
                if not isinstance(value, str) or not value.strip():
                    problems.append(f"{where}.{key}: expected a non-empty string, got {value!r}")
                else:
                    values[key] = value
            else:
                meta = fields[key].metadata
                if not _number(value) or not math.isfinite(value):
                    problems.append(f"{where}.{key}: expected a finite number, got {value!r}")
                elif not meta["min"] <= value <= meta["max"]:
                    problems.append(f"{where}.{key}: {value} is outside {meta['min']}..{meta['max']}")
                else:
                    values[key] = float(value)
        control = Control(**values)
        # diffusers refuses start >= end (AnimateDiffControlNetPipeline.check_inputs).
        if control.guidance_start >= control.guidance_end:
            problems.append(f"{where}.guidance_start: {control.guidance_start} must be below guidance_end "
                            f"{control.guidance_end}")
        out.append(control)
    return tuple(out)


def to_list(controls) -> list[dict]:
    return [dataclasses.asdict(c) for c in controls]
