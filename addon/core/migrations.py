"""Older preset schemas, brought up to the current one before validation.

Each step takes the raw TOML data of one version and returns the data of the next; nothing is
validated here (preset.py does that once, on the result), and the input is never changed.
"""
from __future__ import annotations

import copy
from typing import Any

from . import controls

# rubble.preset/1 had one depth ControlNet: [model] controlnet + controlnet_revision, [look] controlnet_scale.
V1, V2 = "rubble.preset/1", "rubble.preset/2"


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """/1 -> /2: the single depth ControlNet becomes one `[[controls]]` table of kind depth."""
    out = copy.deepcopy(data)
    model = out.get("model") if isinstance(out.get("model"), dict) else {}
    look = out.get("look") if isinstance(out.get("look"), dict) else {}
    control = {"kind": "depth",
               "model": model.pop("controlnet", controls.DEFAULT_MODELS["depth"]),
               "revision": model.pop("controlnet_revision", "main")}
    if "controlnet_scale" in look:
        control["weight"] = look.pop("controlnet_scale")
    if "controls" not in out:  # a /1 preset has none; one that does is a hand edit, kept for validation
        out["controls"] = [control]
    out["schema"] = V2
    return out


STEPS = {V1: _v1_to_v2}


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """`data` at the newest schema this module knows; data of any other schema is returned as it is."""
    while isinstance(data.get("schema"), str) and data["schema"] in STEPS:
        data = STEPS[data["schema"]](data)
    return data
