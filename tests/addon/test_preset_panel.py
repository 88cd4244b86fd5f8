"""The Preset sub-panel's operators as the UI calls them, in real bpy: pick, edit the look in
place, save as, duplicate, export, import; Generate Final runs with the edited look; the
panel's draw code runs in every state it has."""
from pathlib import Path
from types import SimpleNamespace

import bpy
import pytest

import addon
import preset_corpus as corpus
from addon.core.preset import PresetError, load_preset
from addon.ui import presets
from conftest import REPO

QUAKE = REPO / "presets" / "destruction_quake.toml"


@pytest.fixture
def user_presets(tmp_path, monkeypatch):
    """Rubble registered from the checkout, its user presets in a fresh Blender user config."""
    monkeypatch.setenv("BLENDER_USER_CONFIG", str(tmp_path / "config"))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon.register()
    yield tmp_path / "config" / "rubble_presets"
    addon.unregister()


def _files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.exists() else {}


def test_pick_edit_save_duplicate_export_import(user_presets, tmp_path):
    scene, context = bpy.context.scene, bpy.context
    assert bpy.ops.rubble.preset_load(key="shipped:destruction_quake") == {"FINISHED"}
    quake = load_preset(QUAKE)
    assert Path(scene.rubble.preset_path) == QUAKE and scene.rubble_look.prompt == quake.look.prompt
    assert presets.current_preset(context) == quake

    scene.rubble_look.prompt = "night, rain, sodium street lights"
    scene.rubble_look.seed = 7
    edited = presets.current_preset(context)
    assert (edited.look.prompt, edited.shot.seed) == ("night, rain, sodium street lights", 7)
    assert edited.building == quake.building and edited.look.negative_prompt == quake.look.negative_prompt

    # Save As keeps the edits, as a user preset that is now the picked one.
    assert bpy.ops.rubble.preset_save_as(name="Night quake") == {"FINISHED"}
    saved = user_presets / "Night quake.toml"
    assert Path(scene.rubble.preset_path) == saved.resolve()
    assert load_preset(saved).look.prompt == "night, rain, sodium street lights" and load_preset(saved).shot.seed == 7
    items = presets._preset_items(None, context)
    assert {"shipped:default", "user:Night quake"} <= {item[0] for item in items}
    assert {item[3] for item in items} <= ICONS and len({item[4] for item in items}) == len(items)

    # Export: unchanged, the file as it is; edited, what the panel shows.
    assert bpy.ops.rubble.preset_export(filepath=str(tmp_path / "out" / "as is")) == {"FINISHED"}
    assert (tmp_path / "out" / "as is.toml").read_bytes() == saved.read_bytes()
    scene.rubble_look.negative_prompt = "people"
    assert bpy.ops.rubble.preset_export(filepath=str(tmp_path / "out" / "edited.toml")) == {"FINISHED"}
    assert load_preset(tmp_path / "out" / "edited.toml").look.negative_prompt == "people"

    # Duplicate copies the picked file (shipped: comments and all) and picks the copy.
    assert bpy.ops.rubble.preset_load(key="shipped:default") == {"FINISHED"}
    assert bpy.ops.rubble.preset_duplicate(name="my default") == {"FINISHED"}
    assert (user_presets / "my default.toml").read_text() == (REPO / "presets" / "default.toml").read_text()

    # Import: a shared file comes in once checked; a bad one, or a taken name, changes nothing.
    shared = tmp_path / "shared.toml"
    shared.write_text(corpus.DEFAULT_TEXT.replace("seed = 1234", "seed = 4242"))
    assert bpy.ops.rubble.preset_import(filepath=str(shared)) == {"FINISHED"}
    assert scene.rubble_look.seed == 4242 and Path(scene.rubble.preset_path).name == "shared.toml"
    before = _files(user_presets)
    bad = tmp_path / "smuggler.toml"
    bad.write_text(corpus.DEFAULT_TEXT.replace("steps = 20", f"steps = {corpus.CODE}"))
    with pytest.raises(RuntimeError, match="not valid TOML"):
        bpy.ops.rubble.preset_import(filepath=str(bad))
    with pytest.raises(RuntimeError, match="already in your presets"):
        bpy.ops.rubble.preset_import(filepath=str(shared))
    with pytest.raises(RuntimeError, match="cannot be a preset name"):
        bpy.ops.rubble.preset_save_as(name="../outside")
    assert _files(user_presets) == before and not (tmp_path / corpus.SENTINEL).exists()


def test_generate_final_runs_with_the_edited_look_and_refuses_a_bad_edit(user_presets, tmp_path):
    bpy.ops.rubble.preset_load(key="shipped:default")
    scene = bpy.context.scene
    scene.rubble.shot_dir = str(tmp_path / "shot")
    scene.rubble_look.prompt = "x" * 5000
    with pytest.raises(RuntimeError, match=r"look\.prompt: 'x+\.\.\. \(5000 characters\) is longer than the limit"):
        bpy.ops.rubble.generate_final()
    assert not (tmp_path / "shot").exists()


def test_building_essentials_and_the_trigger_frame_are_edited_in_place(user_presets):
    context = bpy.context
    look = context.scene.rubble_look
    bpy.ops.rubble.preset_load(key="shipped:default")
    default = load_preset(REPO / "presets" / "default.toml")
    assert (look.storeys, look.bays_x, look.material, look.trigger_frame) == (
        default.building.storeys, default.building.bays_x, default.building.material, default.triggers[0].frame)
    look.storeys, look.bays_y, look.material = 4, 3, "masonry"
    look.trigger_frame = default.triggers[0].frame + 5
    edited = presets.current_preset(context)
    assert (edited.building.storeys, edited.building.bays_y, edited.building.material) == (4, 3, "masonry")
    assert [t.frame for t in edited.triggers] == [t.frame + 5 for t in default.triggers], "the sequence keeps its timing"
    assert edited.building.bays_x == default.building.bays_x and edited.look == default.look
    look.trigger_frame = 10_000  # past the shot's end: the preset checks say so, naming the key
    with pytest.raises(PresetError, match=r"triggers"):
        presets.current_preset(context)


def test_the_camera_is_edited_in_place_and_a_camera_under_the_ground_is_refused(user_presets):
    context = bpy.context
    look = context.scene.rubble_look
    bpy.ops.rubble.preset_load(key="shipped:default")
    default = load_preset(REPO / "presets" / "default.toml")
    assert [getattr(look, key) for key in presets.CAMERA_KEYS] == pytest.approx(
        [getattr(default.camera, key) for key in presets.CAMERA_KEYS])
    look.lens_mm, look.orbit_deg, look.push_in = 85.0, -30.0, 0.0
    edited = presets.current_preset(context)
    assert (edited.camera.lens_mm, edited.camera.orbit_deg, edited.camera.push_in) == (85.0, -30.0, 0.0)
    assert edited.camera.elevation_deg == default.camera.elevation_deg and edited.building == default.building
    assert bpy.ops.rubble.preset_save_as(name="Tele") == {"FINISHED"}
    assert load_preset(user_presets / "Tele.toml").camera == edited.camera
    look.elevation_deg = -45.0  # within the field's range, but the camera ends up under the ground
    with pytest.raises(PresetError, match=r"camera\.elevation_deg: -45\.0 puts the camera .* below the ground"):
        presets.current_preset(context)


def test_the_model_family_is_picked_in_place_and_a_preset_that_cannot_run_it_says_what_to_change(user_presets):
    context = bpy.context
    scene = context.scene
    assert bpy.ops.rubble.preset_load(key="shipped:wan_vace_1_3b") == {"FINISHED"}
    assert scene.rubble_look.family == "wan-vace" and presets.current_preset(context).model.family == "wan-vace"
    bpy.ops.rubble.preset_load(key="shipped:default")
    assert scene.rubble_look.family == "animatediff-controlnet"
    scene.rubble_look.family = "wan-vace"  # the default's 520x312, free_noise and two controls do not fit Wan
    with pytest.raises(PresetError, match=r"model\.width/height: 520x312 must be multiples of 16 for family 'wan-vace'"):
        presets.current_preset(context)
    scene.rubble_look.family = "animatediff-controlnet"
    assert presets.current_preset(context) == load_preset(REPO / "presets" / "default.toml")


ICONS = set(bpy.types.UILayout.bl_rna.functions["prop"].parameters["icon"].enum_items.keys())


class _Layout:
    """Stands in for a UILayout (there is none without a window): checks that each property,
    operator and icon drawn exists in this Blender."""

    def __init__(self):
        self.drawn = []

    def row(self, **_):
        return self

    column = row

    def prop(self, data, name, icon="NONE", **_):
        assert name in data.bl_rna.properties and icon in ICONS, (name, icon)
        self.drawn.append(name)

    def operator(self, idname, icon="NONE", **_):
        module, name = idname.split(".")
        assert name in dir(getattr(bpy.ops, module)) and icon in ICONS, (idname, icon)
        self.drawn.append(idname)

    def operator_menu_enum(self, idname, prop, **kwargs):
        self.operator(idname, **kwargs)
        assert prop in getattr(bpy.ops.rubble, idname.split(".")[1]).get_rna_type().properties

    def label(self, text="", icon="NONE", **_):
        assert icon in ICONS, icon
        self.drawn.append(f"label:{text}")


def _draw() -> list:
    layout = _Layout()
    presets.RUBBLE_PT_presets.draw(SimpleNamespace(layout=layout), bpy.context)
    return layout.drawn


def test_the_panel_draws_in_every_state(user_presets):
    scene = bpy.context.scene
    scene.rubble.preset_path = ""
    assert "prompt" not in _draw()                       # nothing picked
    scene.rubble.preset_path = str(QUAKE)
    assert "rubble.preset_reload" in _draw() and "prompt" not in _draw()  # picked by path: offer to edit
    bpy.ops.rubble.preset_reload()
    assert {"prompt", "negative_prompt", "seed", *presets.CAMERA_KEYS} <= set(_draw())  # editable in place
    user_presets.mkdir(parents=True)
    (user_presets / "broken.toml").write_text(corpus.DEFAULT_TEXT.replace("fps = 24", "fps = true"))
    scene.rubble.preset_path = str(user_presets / "broken.toml")
    assert any(d.startswith("label:shot.fps: expected int") for d in _draw())  # a user file that does not load


def test_the_preset_panel_is_in_the_sequencer_too(user_presets):
    """Issue 20: the panel, preset picker and essentials included, is in the 3D view's sidebar and the sequencer's."""
    panel = bpy.types.RUBBLE_PT_presets_sequencer
    assert (panel.bl_space_type, panel.bl_parent_id) == ("SEQUENCE_EDITOR", "RUBBLE_PT_shot_sequencer")
    bpy.ops.rubble.preset_load(key="shipped:default")
    layout = _Layout()
    panel.draw(SimpleNamespace(layout=layout), bpy.context)
    assert {"rubble.preset_load", "prompt", "storeys", *presets.CAMERA_KEYS} <= set(layout.drawn)
