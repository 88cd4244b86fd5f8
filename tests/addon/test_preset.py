"""Presets are data: the default loads, and every kind of bad input is reported by key."""
import pytest

from addon.core.preset import DEFAULT_PRESET, PresetError, load_preset, preset_from_dict
from conftest import REPO, write_preset


def test_default_preset_loads_with_typed_sections():
    preset = load_preset(DEFAULT_PRESET)
    assert preset.shot.resolution == (320, 192)
    assert preset.model.weights == "auto"
    assert preset.frame_count == preset.shot.frame_end - preset.shot.frame_start + 1


def test_every_shipped_preset_is_valid():
    for path in (REPO / "presets").glob("*.toml"):
        load_preset(path)


def test_problems_are_all_reported_with_their_keys(tmp_path):
    data = load_preset().to_dict()
    data["shot"]["fps"] = "fast"
    data["building"]["storeys"] = 0
    data["model"]["width"] = 500
    data["look"]["colour"] = "red"
    data["render"]["denoise"] = 1  # TOML's 1 is not true
    data["extra"] = {}
    with pytest.raises(PresetError) as err:
        preset_from_dict(data)
    text = str(err.value)
    for expected in ("shot.fps: expected int", "building.storeys: 0 is below the minimum 1",
                     "model.width: 500 must be a multiple of 8", "look.colour: unknown key", "extra: unknown",
                     "render.denoise: expected bool"):
        assert expected in text, f"{expected!r} missing from:\n{text}"


def test_unknown_schema_version_and_bad_toml_are_refused(tmp_path):
    data = load_preset().to_dict()
    data["schema"] = "rubble.preset/3"
    with pytest.raises(PresetError, match="not supported by this Rubble"):
        preset_from_dict(data)
    bad = tmp_path / "bad.toml"
    bad.write_text("[shot\nfps = 3")
    with pytest.raises(PresetError, match="not valid TOML"):
        load_preset(bad)
    with pytest.raises(PresetError, match="file not found"):
        load_preset(tmp_path / "missing.toml")


def test_cross_field_rules(tmp_path):
    with pytest.raises(PresetError, match="frame_end: 2 is before"):
        load_preset(write_preset(tmp_path / "p.toml", shot={"frame_start": 5, "frame_end": 2}))
    with pytest.raises(PresetError, match="overlap: 4 must be smaller"):
        load_preset(write_preset(tmp_path / "q.toml", model={"window": 4, "overlap": 4}))


def test_section_hash_changes_only_with_its_section():
    a = load_preset()
    b = preset_from_dict({**a.to_dict(), "look": {**a.to_dict()["look"], "prompt": "other"}})
    assert a.section_hash("building") == b.section_hash("building")
    assert a.section_hash("look") != b.section_hash("look")


def _range_checked_keys():
    """Every (section, key, field) the schema range-checks: new keys are covered as they come."""
    import dataclasses
    from addon.core.preset import _SECTIONS
    for section, cls in _SECTIONS.items():
        for f in dataclasses.fields(cls):
            if f.metadata.get("max") is not None:
                yield section, f.name, f


def test_a_value_just_above_each_maximum_is_refused_naming_its_key():
    import math
    checked = list(_range_checked_keys())
    assert len(checked) >= 15, checked  # the schema's range checks did not vanish
    for section, key, f in checked:
        data = load_preset().to_dict()
        high = f.metadata["max"]
        if f.type == "float":
            value = math.nextafter(high, math.inf)
        else:
            step = f.metadata.get("multiple_of") or 1
            value = high + step  # stays a multiple, so only the maximum can refuse it
        data[section][key] = [value, value] if f.type == "tuple[int, int]" else value
        with pytest.raises(PresetError, match=rf"{section}\.{key}: .* is above the maximum {high}"):
            preset_from_dict(data)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_non_finite_floats_are_refused(tmp_path, text):
    path = tmp_path / "p.toml"
    path.write_text(load_text_with(look_line=f"guidance_scale = {text}"))
    with pytest.raises(PresetError, match=r"look\.guidance_scale: .* is not a finite number"):
        load_preset(path)


def load_text_with(look_line: str) -> str:
    """The default preset's text with one line of [look] replaced (TOML's own nan/inf spelling)."""
    lines = (REPO / "presets" / "default.toml").read_text().splitlines()
    start = lines.index("[look]")
    key = look_line.split("=")[0].strip()
    for i in range(start + 1, len(lines)):
        if lines[i].split("=")[0].strip() == key:
            lines[i] = look_line
            return "\n".join(lines) + "\n"
    raise AssertionError(f"{key} not in [look]")


@pytest.mark.parametrize("resolution", [[97, 64], [96, 63]])
def test_an_odd_shot_resolution_is_refused_before_any_work(tmp_path, resolution):
    with pytest.raises(PresetError, match=r"shot\.resolution: \d+ must be a multiple of 2 \(H\.264"):
        load_preset(write_preset(tmp_path / "p.toml", shot={"resolution": resolution}))
