"""The bad-preset corpus: the default preset with one thing wrong at a time.

Each case is one mutation of presets/default.toml (as TOML data, or as TOML text for what
only text can carry) and the dotted key the single message about it must name. The cases
are generated from the values in the file and the schema's ranges, so a new key gets its
wrong-type, bool, out-of-range, NaN and too-long mutations without a new line here.

bpy-free, so it also runs against any version of addon/core/preset.py (before/after counts).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TEXT = (REPO / "presets" / "default.toml").read_text(encoding="utf-8")
# What a preset that tries to run code would run: it creates this file. Nothing may.
SENTINEL = "RUBBLE_CODE_RAN"
CODE = f"__import__('os').system('touch {SENTINEL}')"
MODEL_KEYS = ("base", "motion_adapter", "controlnet")
PATH_LIKE_IDS = ("../../../../etc/passwd", "/etc/passwd", "~/.ssh", "C:\\Windows\\System32", "./weights",
                 "owner/name/extra", "owner/../name", "owner//name", "-owner/name", "owner/name.",
                 "owner--x/name", "owner/name.git", "own er/name", "owner/naïve", "x" * 97 + "/name",
                 "file:///etc/passwd", "https://huggingface.co/owner/name", "", CODE)


@dataclass(frozen=True)
class Case:
    id: str
    key: str                   # the dotted key the one message must name
    data: dict | None = None   # the mutated preset as TOML data ...
    text: str | None = None    # ... or as TOML text


def default_data() -> dict:
    return tomllib.loads(DEFAULT_TEXT)


def _with(section: str | None, key: str, value) -> dict:
    data = default_data()
    if section is None:
        data[key] = value
    else:
        data.setdefault(section, {})[key] = value
    return data


def _field_cases(section: str, cls) -> list[Case]:
    """Wrong type, bool, out of range, non-finite and too long, for every key of one section."""
    cases = []
    defaults = default_data().get(section, {})
    for f in dataclasses.fields(cls):
        key = f"{section}.{f.name}"
        value = defaults.get(f.name, f.default)
        meta = f.metadata
        if isinstance(value, bool):
            cases += [Case(f"{key}=int", key, _with(section, f.name, 1)),
                      Case(f"{key}=str", key, _with(section, f.name, "true"))]
        elif isinstance(value, (int, float)):
            cases += [Case(f"{key}=str", key, _with(section, f.name, "12")),
                      Case(f"{key}=bool", key, _with(section, f.name, True)),
                      Case(f"{key}=code", key, _with(section, f.name, CODE))]
            if isinstance(value, int):
                cases.append(Case(f"{key}=float", key, _with(section, f.name, float(value) + 0.5)))
                cases.append(Case(f"{key}=huge", key, _with(section, f.name, 10**12)))
            else:
                cases += [Case(f"{key}={v}", key, _with(section, f.name, float(v))) for v in ("nan", "inf", "-inf")]
            if meta.get("min") is not None:
                low = meta["min"] - (1 if isinstance(value, int) else 0.5)
                cases.append(Case(f"{key}=below", key, _with(section, f.name, low)))
            if meta.get("max") is not None:
                high = meta["max"] + (meta.get("multiple_of") or 1)
                cases.append(Case(f"{key}=above", key, _with(section, f.name, high)))
        elif isinstance(value, str):
            cases += [Case(f"{key}=int", key, _with(section, f.name, 5)),
                      Case(f"{key}=long", key, _with(section, f.name, "x" * 100_000))]
            if "choices" in meta:
                cases.append(Case(f"{key}=choice", key, _with(section, f.name, "bogus")))
            if f.name in MODEL_KEYS:
                cases += [Case(f"{key}={v[:24]!r}", key, _with(section, f.name, v)) for v in PATH_LIKE_IDS]
            if f.name.endswith("_revision"):
                cases += [Case(f"{key}=rev:{v}", key, _with(section, f.name, v))
                          for v in ("../main", "main; rm -rf /", "x" * 300)]
        elif f.type == "tuple[str, ...]":  # a list of names ([regenerate] roles)
            cases += [Case(f"{key}=str", key, _with(section, f.name, "building")),
                      Case(f"{key}=item", key, _with(section, f.name, [5])),
                      Case(f"{key}=long", key, _with(section, f.name, ["x" * 100_000]))]
        elif isinstance(value, (list, tuple)):  # resolution
            cases += [Case(f"{key}=3", key, _with(section, f.name, [320, 192, 1])),
                      Case(f"{key}=str", key, _with(section, f.name, ["320", 192])),
                      Case(f"{key}=bool", key, _with(section, f.name, [True, 192])),
                      Case(f"{key}=float", key, _with(section, f.name, [320.0, 192])),
                      Case(f"{key}=huge", key, _with(section, f.name, [10**12, 192]))]
        cases.append(Case(f"{key}=typo", f"{section}.{f.name}_", _with(section, f.name + "_", value)))
    return cases


def _trigger_cases() -> list[Case]:
    def trig(**changes):
        data = default_data()
        data["triggers"][0].update(changes)
        return data
    cases = [Case("triggers[0].frame=after-end", "triggers[0].frame", trig(frame=49)),
             Case("triggers[0].frame=huge", "triggers[0].frame", trig(frame=10**12)),
             Case("triggers[0].frame=before-simulation", "triggers[0].frame", trig(frame=0)),
             Case("triggers[0].frame=negative", "triggers[0].frame", trig(frame=-5)),
             Case("triggers[0].frame=bool", "triggers[0].frame", trig(frame=True)),
             Case("triggers[0].frame=float", "triggers[0].frame", trig(frame=30.5)),
             Case("triggers[0].frame=str", "triggers[0].frame", trig(frame="30")),
             Case("triggers[0].storey=nan", "triggers[0].storey", trig(storey=math.nan)),
             Case("triggers[0].columns=str", "triggers[0].columns", trig(columns="all")),
             Case("triggers[0].columns=bool", "triggers[0].columns", trig(columns=[[True, 0]])),
             Case("triggers[0].columns=nan", "triggers[0].columns", trig(columns=[[math.nan, 0]])),
             Case("triggers[0].typo", "triggers[0].fram", trig(fram=30)),
             Case("triggers[0].kind=bogus", "triggers[0].kind", trig(kind="meteor")),
             Case("triggers[0].kind=code", "triggers[0].kind", trig(kind=CODE)),
             Case("triggers=table", "triggers", _with(None, "triggers", {"kind": "shake", "frame": 30}))]
    impact = default_data()
    impact["triggers"] = [{"kind": "impact", "frame": 30, "speed_m_s": math.inf}]
    cases.append(Case("impact.speed_m_s=inf", "triggers[0].speed_m_s", impact))
    impact = copy.deepcopy(impact)
    impact["triggers"][0] = {"kind": "impact", "frame": 30, "direction": [0.0, math.nan, 0.0]}
    cases.append(Case("impact.direction=nan", "triggers[0].direction", impact))
    impact = copy.deepcopy(impact)
    impact["triggers"][0] = {"kind": "impact", "frame": 30, "mass_kg": True}
    cases.append(Case("impact.mass_kg=bool", "triggers[0].mass_kg", impact))
    return cases


def _material_cases() -> list[Case]:
    def mat(name, values):
        return _with(None, "materials", {name: values})
    return [Case("materials.concrete.friction=nan", "materials.concrete.friction", mat("concrete", {"friction": math.nan})),
            Case("materials.concrete.friction=bool", "materials.concrete.friction", mat("concrete", {"friction": True})),
            Case("materials.concrete.density=str", "materials.concrete.density_kg_m3",
                 mat("concrete", {"density_kg_m3": "2500"})),
            Case("materials.concrete.density=huge", "materials.concrete.density_kg_m3",
                 mat("concrete", {"density_kg_m3": 1e300})),
            Case("materials.concrete.typo", "materials.concrete.frictoin", mat("concrete", {"frictoin": 0.5})),
            Case("materials.unknown", "materials.concret", mat("concret", {"friction": 0.5})),
            Case("materials.concrete=number", "materials.concrete", mat("concrete", 5))]


def _document_cases() -> list[Case]:
    cases = []
    for value in ("rubble.preset/0", "rubble.preset/99", "rubble.preset", "blender.preset/1", "", 1, True):
        cases.append(Case(f"schema={value!r}", "schema", _with(None, "schema", value)))
    missing = default_data()
    del missing["schema"]
    cases.append(Case("schema=missing", "schema", missing))
    cases += [Case("name=int", "name", _with(None, "name", 5)),
              Case("name=long", "name", _with(None, "name", "x" * 100_000)),
              Case("section=typo", "shots", _with(None, "shots", {"fps": 24})),
              Case("section=unknown", "extra", _with(None, "extra", {})),
              Case("section=old-trigger", "trigger", _with(None, "trigger", {"kind": "shake"})),
              Case("section=not-a-table", "shot", _with(None, "shot", 5)),
              Case("shot.frame_end<start", "shot.frame_end", _with("shot", "frame_end", 24))]
    return cases


def _text_cases() -> list[Case]:
    """What only TOML text can say: expressions and calls where a number goes."""
    def replace(line_start: str, new: str) -> str:
        lines = DEFAULT_TEXT.splitlines()
        i = next(i for i, line in enumerate(lines) if line.startswith(line_start))
        lines[i] = new
        return "\n".join(lines) + "\n"
    return [Case("text:steps=expression", "not valid TOML", text=replace("steps =", "steps = 2 ** 8")),
            Case("text:seed=call", "not valid TOML", text=replace("seed =", f"seed = {CODE}")),
            Case("text:frame_end=eval", "not valid TOML", text=replace("frame_end =", 'frame_end = eval("48")')),
            Case("text:frame_end=huge", "shot.frame_end", text=replace("frame_end =", "frame_end = 1000000000000")),
            Case("text:storey_height=nan", "building.storey_height_m",
                 text=replace("storey_height_m =", "storey_height_m = nan")),
            Case("text:guidance=-inf", "look.guidance_scale", text=replace("guidance_scale =", "guidance_scale = -inf")),
            Case("text:base=passwd", "model.base", text=replace("base =", 'base = "../../../../etc/passwd"'))]


def cases() -> list[Case]:
    """Every bad preset: each must be refused with one message naming `key`."""
    from addon.core.preset import _SECTIONS
    out = []
    for section, cls in _SECTIONS.items():
        out += _field_cases(section, cls)
    return out + _trigger_cases() + _material_cases() + _document_cases() + _text_cases()


def inert_cases() -> list[Case]:
    """Code where free text is allowed: it loads, stays the same text, and nothing runs."""
    return [Case("look.prompt=code", "look.prompt", _with("look", "prompt", CODE)),
            Case("look.negative_prompt=code", "look.negative_prompt", _with("look", "negative_prompt", CODE)),
            Case("name=code", "name", _with(None, "name", CODE)),
            Case("name=format", "name", _with(None, "name", "{0.__class__.__mro__}%s%(x)s"))]
