"""`[[controls]]`: several ControlNets in the preset, validated by key, and /1 presets migrated."""
import tomllib

import pytest

from addon.core import controls, migrations
from addon.core.preset import SCHEMA, PresetError, load_preset, preset_from_dict
from conftest import REPO, write_preset

# A rubble.preset/1 file as shipped before [[controls]] (only the keys that changed matter).
V1_PRESET = '''
schema = "rubble.preset/1"
name = "old"
[look]
prompt = "a tower"
controlnet_scale = 0.7
[model]
controlnet = "someone/depth-controlnet"
controlnet_revision = "0123456789abcdef0123456789abcdef01234567"
width = 480
height = 288
'''


def test_default_preset_runs_depth_and_normal():
    preset = load_preset()
    assert SCHEMA == "rubble.preset/2"
    assert [(c.kind, c.model, c.revision, c.weight, c.guidance_start, c.guidance_end) for c in preset.controls] == [
        ("depth", "lllyasviel/control_v11f1p_sd15_depth", "539f99181d33db39cf1af2e517cd8056785f0a87", 1.0, 0.0, 1.0),
        ("normal", "lllyasviel/control_v11p_sd15_normalbae", "cb7296e6587a219068e9d65864e38729cd862aa8", 1.0, 0.0, 1.0),
    ]
    assert preset.to_dict()["controls"][1]["kind"] == "normal"


def test_a_v1_preset_becomes_one_depth_control_with_its_old_settings(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text(V1_PRESET)
    preset = load_preset(path)
    assert preset.controls == (controls.Control("depth", "someone/depth-controlnet",
                                                "0123456789abcdef0123456789abcdef01234567", 0.7),)
    assert preset.look.prompt == "a tower" and preset.model.width == 480
    saved = preset.to_dict()
    assert saved["schema"] == SCHEMA and "controlnet" not in saved["model"] and "controlnet_scale" not in saved["look"]
    assert preset_from_dict(saved) == preset, "a migrated preset saves as /2 and loads back the same"


def test_migration_leaves_its_input_alone_and_fills_the_old_defaults():
    data = tomllib.loads('schema = "rubble.preset/1"\n[model]\nwidth = 360\nheight = 216\n')
    migrated = migrations.migrate(data)
    assert data == {"schema": "rubble.preset/1", "model": {"width": 360, "height": 216}}
    assert migrated["controls"] == [{"kind": "depth", "model": "lllyasviel/control_v11f1p_sd15_depth",
                                     "revision": "main"}]
    assert load_preset(REPO / "presets" / "default.toml").controls != preset_from_dict(migrated).controls


@pytest.mark.parametrize("table, expected", [
    ({"kind": "depthmap"}, "controls[1].kind: 'depthmap' is not one of 'depth', 'normal', 'canny', 'lineart'"),
    ({"kind": "depth"}, "controls[1].kind: 'depth' is already controls[0]"),
    ({"kind": "canny", "weight": 2.5}, "controls[1].weight: 2.5 is above the maximum 2.0"),
    ({"kind": "canny", "weight": "high"}, "controls[1].weight: expected float (a number), got str 'high'"),
    ({"kind": "canny", "guidance_start": 0.6, "guidance_end": 0.5}, "controls[1].guidance_start: 0.6 must be below"),
    ({"kind": "canny", "model": ""}, "controls[1].model: '' is not"),
    ({"kind": "canny", "scale": 1.0}, "controls[1].scale: unknown key"),
])
def test_bad_controls_are_reported_by_key(tmp_path, table, expected):
    path = write_preset(tmp_path / "p.toml", controls=[{"kind": "depth"}, table])
    with pytest.raises(PresetError) as err:
        load_preset(path)
    assert expected in str(err.value)


def test_a_kind_alone_takes_its_standard_controlnet(tmp_path):
    preset = load_preset(write_preset(tmp_path / "p.toml", controls=[{"kind": "canny", "weight": 0.5}]))
    assert preset.controls == (controls.Control("canny", "lllyasviel/control_v11p_sd15_canny", "main", 0.5),)


def test_no_controls_and_too_many_are_refused():
    data = load_preset().to_dict()
    with pytest.raises(PresetError, match="controls: 0 controls; list 1 to 4"):
        preset_from_dict({**data, "controls": []})
    with pytest.raises(PresetError, match="controls: expected \\[\\[controls\\]\\] tables"):
        preset_from_dict({**data, "controls": {"kind": "depth"}})
    five = [{"kind": k} for k in controls.KINDS] + [{"kind": "depth"}]
    with pytest.raises(PresetError, match="controls: 5 controls; list 1 to 4"):
        preset_from_dict({**data, "controls": five})


def test_controls_change_the_generate_key_only():
    from addon import pipeline

    a = load_preset()
    b = preset_from_dict({**a.to_dict(), "controls": [{"kind": "depth"}]})
    assert a.section_hash("look", "model") == b.section_hash("look", "model")
    assert a.section_hash("look", "model", "controls") != b.section_hash("look", "model", "controls")
    assert "controls" not in pipeline.SCENE_SECTIONS
