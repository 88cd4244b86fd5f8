"""Presets: TOML data, validated against a typed schema, never executed.

A preset file holds sections (`[shot]`, `[building]`, ...) whose keys map one to one
onto the frozen dataclasses below. Validation reports every problem at once, each
with its dotted key, so a shared preset can be fixed in one go.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .destruction import schema as destruction
from .destruction import triggers as destruction_triggers
from .destruction.materials import MATERIALS, Material
from .long_shot import SECTIONS as LONG_SHOT_SECTIONS
from .long_shot import LongShotSettings, MemorySettings
from .long_shot import cross_checks as long_shot_checks

SCHEMA = "rubble.preset/1"
DEFAULT_PRESET = Path(__file__).resolve().parents[2] / "presets" / "default.toml"


def _range(lo=None, hi=None, **extra):
    return {"min": lo, "max": hi, **extra}


@dataclass(frozen=True)
class ShotSettings:
    frame_start: int = field(default=1, metadata=_range(0))
    frame_end: int = field(default=24, metadata=_range(0))
    fps: int = field(default=24, metadata=_range(1, 240))
    # H.264 with 4:2:0 chroma (final.mp4) needs an even width and height: refuse odd sizes
    # here, not in the encoder after generation was paid for.
    resolution: tuple[int, int] = field(default=(320, 192), metadata=_range(16, 8192, multiple_of=2,
                                                                            why="H.264 needs an even width and height"))
    seed: int = field(default=1234, metadata=_range(0, 2**32 - 1))


@dataclass(frozen=True)
class BuildingSettings:
    storeys: int = field(default=3, metadata=_range(1, 60))
    bays_x: int = field(default=3, metadata=_range(1, 40))
    bays_y: int = field(default=2, metadata=_range(1, 40))
    storey_height_m: float = field(default=3.2, metadata=_range(2.0, 10.0))
    bay_width_m: float = field(default=4.0, metadata=_range(1.0, 20.0))
    column_size_m: float = field(default=0.45, metadata=_range(0.1, 2.0))
    slab_thickness_m: float = field(default=0.3, metadata=_range(0.05, 1.5))
    material: str = field(default="concrete", metadata={"choices": ("concrete", "masonry")})
    # Destruction layout (addon/core/destruction/layout.py): beams, infill walls, windows.
    beam_depth_m: float = field(default=0.5, metadata=_range(0.1, 3.0))
    beam_width_m: float = field(default=0.3, metadata=_range(0.1, 2.0))
    walls: str = field(default="masonry", metadata={"choices": ("none", "concrete", "masonry")})
    wall_thickness_m: float = field(default=0.25, metadata=_range(0.05, 1.0))
    walls_from_storey: int = field(default=0, metadata=_range(0, 59))  # 1: an open ground floor (shops)
    window_width_m: float = field(default=1.6, metadata=_range(0.0, 20.0))
    window_height_m: float = field(default=1.4, metadata=_range(0.0, 10.0))
    sill_height_m: float = field(default=0.9, metadata=_range(0.0, 10.0))


@dataclass(frozen=True)
class RenderSettings:
    samples: int = field(default=8, metadata=_range(1, 4096))
    engine: str = field(default="CYCLES", metadata={"choices": ("CYCLES",)})


@dataclass(frozen=True)
class LookSettings:
    prompt: str = "photo of a concrete building collapsing, dust, debris, film still"
    negative_prompt: str = "cartoon, render, low quality, blurry"
    steps: int = field(default=20, metadata=_range(1, 200))
    guidance_scale: float = field(default=7.5, metadata=_range(0.0, 30.0))
    controlnet_scale: float = field(default=1.0, metadata=_range(0.0, 2.0))


@dataclass(frozen=True)
class ModelSettings:
    family: str = field(default="animatediff-controlnet", metadata={"choices": ("animatediff-controlnet",)})
    weights: str = field(default="auto", metadata={"choices": ("auto", "pretrained", "tiny")})
    base: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    base_revision: str = "main"
    motion_adapter: str = "guoyww/animatediff-motion-adapter-v1-5-3"
    motion_adapter_revision: str = "main"
    controlnet: str = "lllyasviel/control_v11f1p_sd15_depth"
    controlnet_revision: str = "main"
    # SD1.5's VAE downsamples by 8, so the generation size must be a multiple of 8.
    width: int = field(default=512, metadata=_range(64, 2048, multiple_of=8))
    height: int = field(default=320, metadata=_range(64, 2048, multiple_of=8))
    window: int = field(default=16, metadata=_range(1, 64))
    overlap: int = field(default=4, metadata=_range(0, 63))
    # Frames the VAE decodes at once: peak memory, not the frames (inference/animatediff_controlnet.py).
    decode_chunk_size: int = field(default=8, metadata=_range(1, 64))


@dataclass(frozen=True)
class Preset:
    name: str = "Unnamed"
    shot: ShotSettings = ShotSettings()
    building: BuildingSettings = BuildingSettings()
    render: RenderSettings = RenderSettings()
    look: LookSettings = LookSettings()
    model: ModelSettings = ModelSettings()
    long_shot: LongShotSettings = LongShotSettings()
    memory: MemorySettings = MemorySettings()
    materials: dict[str, Material] = field(default_factory=lambda: dict(MATERIALS))
    fracture: destruction.FractureSettings = destruction.FractureSettings()
    simulation: destruction.SimulationSettings = destruction.SimulationSettings()
    triggers: tuple[destruction_triggers.Trigger, ...] = ()

    @property
    def frame_count(self) -> int:
        return self.shot.frame_end - self.shot.frame_start + 1

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["schema"] = SCHEMA
        data["shot"]["resolution"] = list(self.shot.resolution)
        data["materials"] = destruction.materials_to_dict(self.materials)
        data["triggers"] = destruction_triggers.to_list(self.triggers)
        return data

    def section_hash(self, *sections: str) -> str:
        """A stable digest of some sections: what a stage's output depends on."""
        data = self.to_dict()
        picked = {name: data[name] for name in sections}
        return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:16]


_SECTIONS = {"shot": ShotSettings, "building": BuildingSettings,
             "render": RenderSettings, "look": LookSettings, "model": ModelSettings, **LONG_SHOT_SECTIONS,
             **destruction.SECTIONS}


class PresetError(ValueError):
    """A preset that cannot be used; `problems` lists each bad key."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"Invalid preset {source}:\n{lines}\nFix these keys (see presets/default.toml for a complete example).")


def _check_value(key: str, value: Any, typ: Any, meta: dict, problems: list[str]) -> Any:
    if typ in ("int", int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typ in ("float", float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif typ in ("str", str):
        ok = isinstance(value, str)
    elif typ in ("bool", bool):
        ok = isinstance(value, bool)
    elif typ == "tuple[int, int]":
        ok = (isinstance(value, list) and len(value) == 2
              and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
        if not ok:
            problems.append(f"{key}: expected [width, height] as two integers, got {value!r}")
            return None
        for v in value:
            _check_value(key, v, int, meta, problems)
        return tuple(value)
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported preset field type {typ!r}")
    if not ok:
        problems.append(f"{key}: expected {getattr(typ, '__name__', typ)}, got {type(value).__name__} {value!r}")
        return None
    if isinstance(value, float) and not math.isfinite(value):  # TOML has nan and inf; no range check sees them
        problems.append(f"{key}: {value} is not a finite number")
        return None
    if "choices" in meta and value not in meta["choices"]:
        problems.append(f"{key}: {value!r} is not one of {', '.join(map(repr, meta['choices']))}")
    if meta.get("min") is not None and value < meta["min"]:
        problems.append(f"{key}: {value} is below the minimum {meta['min']}")
    if meta.get("max") is not None and value > meta["max"]:
        problems.append(f"{key}: {value} is above the maximum {meta['max']}")
    if meta.get("multiple_of") and value % meta["multiple_of"]:
        why = f" ({meta['why']})" if meta.get("why") else ""
        problems.append(f"{key}: {value} must be a multiple of {meta['multiple_of']}{why}")
    return value


def _build_section(cls, name: str, data: Any, problems: list[str]):
    if not isinstance(data, dict):
        problems.append(f"{name}: expected a table [{name}], got {type(data).__name__}")
        return cls()
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            problems.append(f"{name}.{key}: unknown key (known: {', '.join(known)})")
    values = {}
    for key, f in known.items():
        if key in data:
            checked = _check_value(f"{name}.{key}", data[key], f.type, f.metadata, problems)
            if checked is not None:
                values[key] = checked
    return cls(**values)


def preset_from_dict(data: dict[str, Any], source: str = "<dict>") -> Preset:
    problems: list[str] = []
    schema = data.get("schema")
    if schema is None:
        problems.append(f"schema: missing; add `schema = \"{SCHEMA}\"` at the top")
    elif not isinstance(schema, str) or schema.rsplit("/", 1)[0] != SCHEMA.rsplit("/", 1)[0]:
        problems.append(f"schema: {schema!r} is not a Rubble preset schema (expected {SCHEMA!r})")
    elif schema != SCHEMA:
        problems.append(f"schema: version {schema!r} is not supported by this Rubble "
                        f"(it reads {SCHEMA!r}); update Rubble or re-save the preset")

    for key in data:
        if key == "trigger":
            problems.append("trigger: the single [trigger] table was replaced by a list; write each trigger as "
                            "[[triggers]] with kind and frame (presets/default.toml has examples)")
        elif key not in _SECTIONS and key not in ("schema", "name", "materials", "triggers"):
            problems.append(f"{key}: unknown section or key (known: name, materials, triggers, {', '.join(_SECTIONS)})")
    name = data.get("name", "Unnamed")
    if not isinstance(name, str):
        problems.append(f"name: expected a string, got {name!r}")
        name = "Unnamed"
    built = {key: _build_section(cls, key, data.get(key, {}), problems) for key, cls in _SECTIONS.items()}
    materials = destruction.parse_materials(data.get("materials"), problems)
    triggers = destruction_triggers.parse(data.get("triggers"), problems)
    preset = Preset(name=name, materials=materials, triggers=triggers, **built)
    if not problems:
        if preset.shot.frame_end < preset.shot.frame_start:
            problems.append(f"shot.frame_end: {preset.shot.frame_end} is before shot.frame_start {preset.shot.frame_start}")
        if preset.model.overlap >= preset.model.window:
            problems.append(f"model.overlap: {preset.model.overlap} must be smaller than model.window {preset.model.window}")
        problems += destruction.cross_checks(preset)
        problems += long_shot_checks(preset)
    if problems:
        raise PresetError(source, problems)
    return preset


def load_preset(path: str | Path = DEFAULT_PRESET) -> Preset:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PresetError(str(path), ["file not found; pass a .toml preset (presets/ has examples)"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(str(path), [f"not valid TOML: {exc}"]) from None
    return preset_from_dict(data, source=str(path))
