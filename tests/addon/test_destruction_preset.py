"""The destruction sections of a preset: overrides apply, impossible buildings are refused
before any work with the key and the allowed range."""
import pytest

from addon.core.preset import PresetError, load_preset, preset_from_dict


def data_with(**sections):
    data = load_preset().to_dict()
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return data


def refused(data) -> str:
    with pytest.raises(PresetError) as err:
        preset_from_dict(data)
    return str(err.value)


def test_resolved_preset_round_trips_with_its_materials():
    preset = load_preset()
    again = preset_from_dict(preset.to_dict())
    assert again == preset


def test_material_override_reaches_the_preset():
    preset = preset_from_dict(data_with(materials={"masonry": {"tensile_strength_pa": 2.0e5}}))
    assert preset.materials["masonry"].tensile_strength_pa == 2.0e5
    assert preset.materials["concrete"] == load_preset().materials["concrete"]


@pytest.mark.parametrize("sections, expected", [
    ({"building": {"storeys": 0}}, "building.storeys: 0 is below the minimum 1"),
    ({"building": {"bay_width_m": -4.0}}, "building.bay_width_m: -4.0 is below the minimum 1.0"),
    ({"building": {"window_width_m": 5.0}}, "building.window_width_m: 5.0 leaves less than 0.1 m of wall"),
    ({"building": {"walls": "glass"}}, "building.walls: 'glass' is not one of"),
    ({"materials": {"unobtainium": {"friction": 0.5}}}, "materials.unobtainium: unknown material"),
    ({"materials": {"concrete": {"density_kg_m3": float("inf")}}}, "materials.concrete.density_kg_m3: inf is outside"),
    ({"fracture": {"cell_density_scale": 90.0}}, "fracture.cell_density_scale: this building would break into"),
    ({"simulation": {"warmup_frames": 50, "preroll_frames": 10}}, "simulation.warmup_frames: 50 must not exceed"),
])
def test_impossible_destruction_settings_are_refused_by_key(sections, expected):
    assert expected in refused(data_with(**sections))


def test_a_pre_roll_must_fit_before_the_shot():
    """A cache starting at a negative frame comes back from shot.blend re-simulated (measured),
    so the pre-roll has to fit in frames 0 .. frame_start - 1."""
    text = refused(data_with(shot={"frame_start": 1, "frame_end": 40},
                             simulation={"preroll_frames": 24, "warmup_frames": 12}))
    assert "simulation.preroll_frames: 24 frames do not fit before shot.frame_start 1" in text
    preset_from_dict(data_with(shot={"frame_start": 24, "frame_end": 40},
                               simulation={"preroll_frames": 24, "warmup_frames": 12}))
