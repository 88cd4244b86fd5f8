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
from dataclasses import dataclass, field

from . import model_ids

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
    kind: str = field(default="depth", metadata={"choices": KINDS})
    # empty: DEFAULT_MODELS[kind]; else a hub id or a local model folder (core/model_ids.py)
    model: str = field(default="", metadata={"kind": "model_id", "max_length": model_ids.PATH_MAX})
    revision: str = field(default="main", metadata={"kind": "revision", "max_length": model_ids.REVISION_MAX})
    weight: float = field(default=1.0, metadata=_range(0.0, 2.0))
    guidance_start: float = field(default=0.0, metadata=_range(0.0, 1.0))
    guidance_end: float = field(default=1.0, metadata=_range(0.0, 1.0))

    def __post_init__(self):
        if not self.model and self.kind in DEFAULT_MODELS:
            object.__setattr__(self, "model", DEFAULT_MODELS[self.kind])


DEFAULT_CONTROLS = (Control("depth"), Control("normal"))


def parse(data, problems: list[str], build_section) -> tuple[Control, ...]:
    """The `[[controls]]` array as Control dataclasses; problems named `controls[k].key`.
    `build_section(cls, name, table)` checks each table's keys and values the way every preset
    section is checked (preset.py: types, ranges, NaN, model ids, lengths). Absent: the default
    depth + normal pair."""
    if data is None:
        return DEFAULT_CONTROLS
    if not isinstance(data, list):
        problems.append("controls: expected [[controls]] tables (an array), got a single table")
        return DEFAULT_CONTROLS
    if not 1 <= len(data) <= MAX_CONTROLS:
        problems.append(f"controls: {len(data)} controls; list 1 to {MAX_CONTROLS} [[controls]] tables "
                        f"(one per kind: {', '.join(KINDS)})")
    out, seen = [], {}
    for k, table in enumerate(data):
        where = f"controls[{k}]"
        if isinstance(table, dict) and "kind" not in table:
            problems.append(f"{where}.kind: missing; one of {', '.join(map(repr, KINDS))}")
            continue
        before = len(problems)
        control = build_section(Control, where, table)
        if len(problems) > before:
            continue
        if control.kind in seen:
            problems.append(f"{where}.kind: {control.kind!r} is already controls[{seen[control.kind]}]; each kind "
                            "once (raise that control's weight instead)")
        seen.setdefault(control.kind, k)
        # diffusers refuses start >= end (AnimateDiffControlNetPipeline.check_inputs).
        if control.guidance_start >= control.guidance_end:
            problems.append(f"{where}.guidance_start: {control.guidance_start} must be below guidance_end "
                            f"{control.guidance_end}")
        out.append(control)
    return tuple(out)


def to_list(controls) -> list[dict]:
    return [dataclasses.asdict(c) for c in controls]
