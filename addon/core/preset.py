"""Presets: TOML data, validated against a typed schema, never executed.

A preset file holds sections (`[shot]`, `[building]`, ...) whose keys map one to one
onto the frozen dataclasses below. Validation reports every problem at once, each
with its dotted key and the type or range it expects, so a shared preset can be fixed
in one go. A preset is shared data: nothing in it is ever evaluated (tomllib parses
TOML, which has no expressions), every string has a length limit, every number a
range, and a model id is a hub id or a local model folder (core/model_ids.py).
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

from . import camera, checks, migrations, model_family, model_ids, regenerate
from . import controls as controls_schema
from .checks import MAX_FRAME, described, shown
from .destruction import schema as destruction
from .destruction import triggers as destruction_triggers
from .destruction.materials import MATERIALS, Material
from .draft import SECTIONS as DRAFT_SECTIONS
from .draft import DraftSettings
from .draft import cross_checks as draft_checks
from .long_shot import SECTIONS as LONG_SHOT_SECTIONS
from .long_shot import LongShotSettings, MemorySettings
from .long_shot import cross_checks as long_shot_checks
from .upscale import SECTIONS as UPSCALE_SECTIONS
from .upscale import UpscaleSettings

SCHEMA = migrations.V2
# Every schema this Rubble reads: older ones are migrated to SCHEMA first (core/migrations.py).
KNOWN_SCHEMAS = (*migrations.STEPS, SCHEMA)
DEFAULT_PRESET = Path(__file__).resolve().parents[2] / "presets" / "default.toml"


def _range(lo=None, hi=None, **extra):
    return {"min": lo, "max": hi, **extra}


@dataclass(frozen=True)
class ShotSettings:
    frame_start: int = field(default=1, metadata=_range(0, MAX_FRAME, max_why="Blender's last frame"))
    frame_end: int = field(default=24, metadata=_range(0, MAX_FRAME, max_why="Blender's last frame"))
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
    """Cycles settings of the passes stage (addon/scene/passes.py)."""
    # Samples per pixel. Depth and Object Index come from the first sample whatever this says,
    # Normal and Vector are averaged over all of them (antialiased edges); only the clay needs more.
    samples: int = field(default=1, metadata=_range(1, 4096))
    # OpenImageDenoise on the clay (Combined) pass only: 1 denoised sample is closer to a 64-sample
    # clay than 8 raw samples, at a third of the CPU (README "Passes stage"). Data passes never are.
    denoise: bool = True
    # The passes' EXR codec, all lossless. "none" is what the control stage reads fastest (its
    # own reader takes the pixels straight from the file: 1.5x the frames/s of "rle" at 512x288);
    # "rle" takes 0.6x the disk, "zip" 0.26x (README "Speed of the passes and control stages").
    pass_codec: str = field(default="none", metadata={"choices": ("none", "rle", "zip")})
    engine: str = field(default="CYCLES", metadata={"choices": ("CYCLES",)})


@dataclass(frozen=True)
class LookSettings:
    prompt: str = field(default="photo of a concrete building collapsing, dust, debris, film still",
                        metadata={"max_length": checks.MAX_PROMPT})
    negative_prompt: str = field(default="cartoon, render, low quality, blurry",
                                 metadata={"max_length": checks.MAX_PROMPT})
    steps: int = field(default=20, metadata=_range(1, 200))
    guidance_scale: float = field(default=7.5, metadata=_range(0.0, 30.0))
    # 1.0: text-to-video; below: start from the clay render noised to this strength (video-to-video,
    # inference/video_to_video.py). Above 0: int(steps × strength) steps must remain (cross-checked).
    strength: float = field(default=1.0, metadata=_range(0.0, 1.0))


_MODEL_ID = {"kind": "model_id", "max_length": model_ids.PATH_MAX}
# What each model family's generation width and height must be a multiple of: SD1.5's VAE
# downsamples by 8. The aspect check (checks.aspect_problem) proposes sizes on this grid.
GENERATION_MULTIPLE = {"animatediff-controlnet": 8, "wan-vace": model_family.WAN_SIZE_MULTIPLE}
GENERATION_SIZE_RANGE = (64, 2048)
_REVISION = {"kind": "revision", "max_length": model_ids.REVISION_MAX}


@dataclass(frozen=True)
class ModelSettings:
    family: str = field(default="animatediff-controlnet", metadata={"choices": model_family.FAMILIES})
    weights: str = field(default="auto", metadata={"choices": ("auto", "pretrained", "tiny")})
    # Hub ids (owner/name) or absolute paths of local model folders (core/model_ids.py); revisions
    # are commits, as in the shipped presets (presets/README.md says where each hash was found).
    base: str = field(default="stable-diffusion-v1-5/stable-diffusion-v1-5", metadata=_MODEL_ID)
    base_revision: str = field(default="451f4fe16113bff5a5d2269ed5ad43b0592e9a14", metadata=_REVISION)
    motion_adapter: str = field(default="guoyww/animatediff-motion-adapter-v1-5-3", metadata=_MODEL_ID)
    motion_adapter_revision: str = field(default="449d8993ead63a068e1030eb26925132814db1c8", metadata=_REVISION)
    # SD1.5's VAE downsamples by 8, so the generation size must be a multiple of 8.
    # 520x312 keeps the default shot's 320x192 aspect (5:3) at about SD1.5's 512x320 area.
    width: int = field(default=520, metadata=_range(*GENERATION_SIZE_RANGE, multiple_of=8))
    height: int = field(default=312, metadata=_range(*GENERATION_SIZE_RANGE, multiple_of=8))
    # Up to Wan's 81-frame clips and beyond; AnimateDiff keeps 64 (core/model_family.py).
    window: int = field(default=16, metadata=_range(1, 128))
    overlap: int = field(default=4, metadata=_range(0, 127))
    # Frames the VAE decodes at once: peak memory, not the frames (inference/families/animatediff_controlnet.py).
    decode_chunk_size: int = field(default=8, metadata=_range(1, 64))


@dataclass(frozen=True)
class NoiseSettings:
    """Initial noise (inference/noise_warp.py): "fresh" i.i.d. per frame, or "warped" along the flow."""
    mode: str = field(default="fresh", metadata={"choices": ("fresh", "warped")})
    # Share of the warped noise's variance: sqrt(s)·warped + sqrt(1-s)·fresh stays N(0, 1).
    strength: float = field(default=1.0, metadata=_range(0.0, 1.0))
    # A motion-adapter LoRA: a local .safetensors file or folder, or a cached hub id; "" = none.
    motion_lora: str = field(default="", metadata={"max_length": model_ids.PATH_MAX})
    motion_lora_revision: str = field(default="main", metadata=_REVISION)


@dataclass(frozen=True)
class Preset:
    name: str = "Unnamed"
    shot: ShotSettings = ShotSettings()
    building: BuildingSettings = BuildingSettings()
    camera: camera.CameraSettings = camera.CameraSettings()
    render: RenderSettings = RenderSettings()
    look: LookSettings = LookSettings()
    model: ModelSettings = ModelSettings()
    noise: NoiseSettings = NoiseSettings()
    long_shot: LongShotSettings = LongShotSettings()
    memory: MemorySettings = MemorySettings()
    upscale: UpscaleSettings = UpscaleSettings()
    regenerate: regenerate.RegenerateSettings = regenerate.RegenerateSettings()
    draft: DraftSettings = DraftSettings()
    materials: dict[str, Material] = field(default_factory=lambda: dict(MATERIALS))
    fracture: destruction.FractureSettings = destruction.FractureSettings()
    simulation: destruction.SimulationSettings = destruction.SimulationSettings()
    triggers: tuple[destruction_triggers.Trigger, ...] = ()
    controls: tuple[controls_schema.Control, ...] = controls_schema.DEFAULT_CONTROLS

    @property
    def frame_count(self) -> int:
        return self.shot.frame_end - self.shot.frame_start + 1

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["schema"] = SCHEMA
        data["shot"]["resolution"] = list(self.shot.resolution)
        data["materials"] = destruction.materials_to_dict(self.materials)
        data["triggers"] = destruction_triggers.to_list(self.triggers)
        data["controls"] = controls_schema.to_list(self.controls)
        data["regenerate"]["roles"] = list(self.regenerate.roles)
        return data

    def section_hash(self, *sections: str) -> str:
        """A stable digest of some sections: what a stage's output depends on."""
        data = self.to_dict()
        picked = {name: data[name] for name in sections}
        return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:16]


_SECTIONS = {"shot": ShotSettings, "building": BuildingSettings, **camera.SECTIONS,
             "render": RenderSettings, "look": LookSettings, "model": ModelSettings, "noise": NoiseSettings,
             **LONG_SHOT_SECTIONS, **UPSCALE_SECTIONS, **regenerate.SECTIONS, **DRAFT_SECTIONS,
             **destruction.SECTIONS}


class PresetError(ValueError):
    """A preset that cannot be used; `problems` lists each bad key."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"Invalid preset {source}:\n{lines}\nFix these keys (see presets/default.toml for a complete example).")


_TYPE_WORDS = {int: "int (a whole number)", float: "float (a number)", str: "str (text in quotes)",
               bool: "bool (true or false)"}
_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def _check_value(key: str, value: Any, typ: Any, meta: dict, problems: list[str], check_local: bool = True) -> Any:
    """`value` checked against its field's type and metadata, or None with the problem added."""
    typ = _TYPES.get(typ, typ)
    if typ == "tuple[str, ...]":  # a list of names, each a checked string
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.append(f"{key}: expected a list of {meta.get('item', 'text in quotes')}, got {described(value)}")
            return None
        if len(value) > meta["max_items"]:
            problems.append(f"{key}: {len(value)} items, more than the limit of {meta['max_items']}")
            return None
        checked = [_check_text(key, v, meta, problems, check_local) for v in value]
        return tuple(checked) if None not in checked else None
    if typ == "tuple[int, int]":
        ok = (isinstance(value, list) and len(value) == 2
              and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
        if not ok:
            problems.append(f"{key}: expected [width, height] as two int (whole numbers), got {shown(value)}")
            return None
        checked = [_check_value(key, v, int, meta, problems) for v in value]
        return tuple(checked) if None not in checked else None
    if typ is int:
        ok = isinstance(value, int) and not isinstance(value, bool)  # TOML true is not 1 here
    elif typ is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif typ is str:
        ok = isinstance(value, str)
    elif typ is bool:
        ok = isinstance(value, bool)  # TOML true/false; 1 or "yes" are refused, not guessed
        if ok:
            return value
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported preset field type {typ!r}")
    if not ok:
        problems.append(f"{key}: expected {_TYPE_WORDS[typ]}, got {described(value)}")
        return None
    if isinstance(value, float) and not math.isfinite(value):  # TOML has nan and inf; no range check sees them
        problems.append(f"{key}: {value} is not a finite number (expected a float from {meta.get('min')} "
                        f"to {meta.get('max')})")
        return None
    if isinstance(value, str):
        return _check_text(key, value, meta, problems, check_local)
    before = len(problems)
    if meta.get("min") is not None and value < meta["min"]:
        problems.append(f"{key}: {value} is below the minimum {meta['min']}")
    if meta.get("max") is not None and value > meta["max"]:
        why = f" ({meta['max_why']})" if meta.get("max_why") else ""
        problems.append(f"{key}: {value} is above the maximum {meta['max']}{why}")
    if len(problems) == before and meta.get("multiple_of") and value % meta["multiple_of"]:
        why = f" ({meta['why']})" if meta.get("why") else ""
        problems.append(f"{key}: {value} must be a multiple of {meta['multiple_of']}{why}")
    return value if len(problems) == before else None


def _check_text(key: str, value: str, meta: dict, problems: list[str], check_local: bool) -> str | None:
    limit = meta.get("max_length", checks.MAX_STRING)
    if len(value) > limit:
        problems.append(f"{key}: {shown(value)} is longer than the limit of {limit} characters")
        return None
    if "choices" in meta and value not in meta["choices"]:
        problems.append(f"{key}: {shown(value)} is not one of {', '.join(map(repr, meta['choices']))}")
        return None
    kind = meta.get("kind")
    reason = (model_ids.model_id_problem(value, check_local) if kind == "model_id"
              else model_ids.revision_problem(value) if kind == "revision" else None)
    if reason:
        problems.append(f"{key}: {shown(value)} {reason}")
        return None
    return value


def _build_section(cls, name: str, data: Any, problems: list[str], check_local: bool = True):
    if not isinstance(data, dict):
        problems.append(f"{name}: expected a table [{name}], got {described(data)}")
        return cls()
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            problems.append(checks.unknown(f"{name}.{key}", "key", known))
    values = {}
    for key, f in known.items():
        if key in data:
            checked = _check_value(f"{name}.{key}", data[key], f.type, f.metadata, problems, check_local)
            if checked is not None:
                values[key] = checked
    return cls(**values)


def _schema_problem(schema: Any) -> str | None:
    known = ", ".join(map(repr, KNOWN_SCHEMAS))
    if schema is None:
        return f"schema: missing; add `schema = \"{SCHEMA}\"` at the top (this Rubble reads {known})"
    if not isinstance(schema, str):
        return f"schema: expected str (text in quotes) such as {SCHEMA!r}, got {described(schema)}"
    if schema in KNOWN_SCHEMAS:
        return None
    if schema.rsplit("/", 1)[0] == SCHEMA.rsplit("/", 1)[0]:
        return (f"schema: version {shown(schema)} is not supported by this Rubble (it reads {known}); update "
                "Rubble, or save the preset again from the Rubble that made it")
    return f"schema: {shown(schema)} is not a Rubble preset schema (this Rubble reads {known})"


def _shot_range_problem(shot: ShotSettings) -> str | None:
    if shot.frame_end < shot.frame_start:
        return f"shot.frame_end: {shot.frame_end} is before shot.frame_start {shot.frame_start}"
    count = shot.frame_end - shot.frame_start + 1
    if count > checks.MAX_SHOT_FRAMES:
        return (f"shot.frame_end: frames {shot.frame_start}-{shot.frame_end} make a shot of {count} frames, beyond "
                f"the sane maximum of {checks.MAX_SHOT_FRAMES} frames for one shot (about 7 minutes at 24 fps); "
                "split longer work into several shots")
    return None


def _strength_checks(preset: Preset) -> list[str]:
    """diffusers' video-to-video runs int(steps × strength) of the steps; none left is no generation."""
    look = preset.look
    if look.strength < 1.0 and int(look.steps * look.strength) < 1:
        return [f"look.strength: {look.strength} × look.steps {look.steps} leaves no denoising step (int(steps × "
                f"strength) of them run); raise strength to at least {1 / look.steps:.3g} or raise steps"]
    return []
def _aspect_problems(preset: Preset) -> list[str]:
    """The generation size must keep the shot's aspect (frames are resized to it, not cropped)."""
    multiple = GENERATION_MULTIPLE.get(preset.model.family, 8)
    problem = checks.aspect_problem(preset.shot.resolution, (preset.model.width, preset.model.height), multiple,
                                    *GENERATION_SIZE_RANGE)
    return [problem] if problem else []


def preset_from_dict(data: dict[str, Any], source: str = "<dict>", check_local: bool = True) -> Preset:
    """The preset `data` describes, or PresetError listing every problem. `check_local=False`
    checks the form of local model paths only, not that their folders exist here (a shot's
    own preset read back on a farm node that never loads the model). Data of an older schema is
    brought up to date first (core/migrations.py); the input is not changed."""
    schema_problem = _schema_problem(data.get("schema"))
    if schema_problem:  # another schema's keys would only add noise to the one message that matters
        raise PresetError(source, [schema_problem])
    data = migrations.migrate(data)
    problems: list[str] = []
    top_level = ("schema", "name", "materials", "triggers", "controls", *_SECTIONS)
    for key in data:
        if key == "trigger":
            problems.append("trigger: the single [trigger] table was replaced by a list; write each trigger as "
                            "[[triggers]] with kind and frame (presets/default.toml has examples)")
        elif key not in top_level:
            problems.append(checks.unknown(key, "section or key", top_level))
    name = _check_value("name", data.get("name", "Unnamed"), str, {"max_length": checks.MAX_NAME}, problems)
    built = {key: _build_section(cls, key, data.get(key, {}), problems, check_local) for key, cls in _SECTIONS.items()}
    materials = destruction.parse_materials(data.get("materials"), problems)
    triggers = destruction_triggers.parse(data.get("triggers"), problems)
    controls = controls_schema.parse(
        data.get("controls"), problems,
        lambda cls, where, table: _build_section(cls, where, table, problems, check_local))
    preset = Preset(name=name if name is not None else "Unnamed", materials=materials, triggers=triggers,
                    controls=controls, **built)
    if not problems:  # rules across keys, once every key is right on its own
        shot_problem = _shot_range_problem(preset.shot)
        if shot_problem:
            problems.append(shot_problem)
        elif preset.model.overlap >= preset.model.window:
            problems.append(f"model.overlap: {preset.model.overlap} must be smaller than model.window {preset.model.window}")
        else:
            problems += destruction.cross_checks(preset)
            problems += camera.cross_checks(preset)
            problems += long_shot_checks(preset)
            problems += model_family.cross_checks(preset)
            problems += _aspect_problems(preset)
            problems += _strength_checks(preset)
            problems += regenerate.cross_checks(preset, check_local)
            problems += draft_checks(preset)
    if problems:
        raise PresetError(source, problems)
    return preset


def load_preset(path: str | Path = DEFAULT_PRESET, check_local: bool = True) -> Preset:
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(checks.MAX_PRESET_BYTES + 1)
    except FileNotFoundError:
        raise PresetError(str(path), ["file not found; pass a .toml preset (presets/ has examples)"]) from None
    except IsADirectoryError:
        raise PresetError(str(path), ["is a folder; pass a .toml preset file"]) from None
    return preset_from_bytes(raw, str(path), check_local)


def preset_from_bytes(raw: bytes, source: str, check_local: bool = True) -> Preset:
    """The preset in the bytes of a .toml file (what an import validates before it copies them)."""
    if len(raw) > checks.MAX_PRESET_BYTES:
        raise PresetError(source, [f"larger than {checks.MAX_PRESET_BYTES // 1024} KiB; a preset is a few "
                                   "kilobytes of TOML: is this the right file?"])
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise PresetError(source, [f"not UTF-8 text ({exc.reason} at byte {exc.start}); a preset is TOML text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(source, [f"not valid TOML: {exc} (TOML is data: numbers, text in quotes, "
                                   "true/false, [lists]; no expressions or calls)"]) from None
    except RecursionError:
        raise PresetError(source, ["not valid TOML: nested too deeply"]) from None
    return preset_from_dict(data, source=source, check_local=check_local)
