"""Look previews in Blender (issue 22 items 1 and 4), real bpy: Preview Frame runs the shot's stages
and the real backend on the tiny model and lists the still; the list survives saving and reopening
the .blend; one click puts a preview's look back into the preset the runs are made with."""
import types

import bpy
import pytest

import addon
from addon.core.preset import load_preset
from addon.ui import presets, previews
from addon.ui.operators import RUBBLE_OT_generate_final
from conftest import REPO, SMALL_SHOT, write_preset
from test_panel import RecordingLayout


@pytest.fixture
def registered(tmp_path, monkeypatch):
    monkeypatch.setenv("BLENDER_USER_CONFIG", str(tmp_path / "config"))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon.register()
    yield bpy.context.scene
    RUBBLE_OT_generate_final.running_job = None
    addon.unregister()


def _still(path, shade: float):
    """A real PNG on disk, as the backend writes a preview."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = bpy.data.images.new("still", 8, 8)
    image.pixels = [shade, shade, shade, 1.0] * 64
    image.filepath_raw, image.file_format = str(path), "PNG"
    image.save()
    bpy.data.images.remove(image)


def _result(shot, preview_id, frame, prompt, seed, strength=1.0):
    """A `preview` result event as the backend sends it (tests/inference/test_preview.py checks the backend's)."""
    output = f"previews/{preview_id}/frame_{frame:04d}.png"
    _still(shot / output, 0.1 * frame)
    return {"type": "result", "stage": "preview", "id": preview_id, "frame": frame, "reused": False, "seed": seed,
            "outputs": [output, f"previews/{preview_id}/provenance.json"],
            "look": {"prompt": prompt, "negative_prompt": f"not {prompt}", "steps": 2, "guidance_scale": 7.5,
                     "strength": strength}}


def test_the_preview_history_survives_saving_and_reopening_the_blend(registered, tmp_path):
    shot = tmp_path / "shot"
    for number in range(3):
        previews.add_entry(registered, _result(shot, f"{number:016x}", number + 1, f"look {number}", 10 + number), shot)
    previews.add_entry(registered, _result(shot, f"{1:016x}", 2, "look 1", 11), shot)  # again: moves to the top
    blend = tmp_path / "artist.blend"
    bpy.ops.wm.save_mainfile(filepath=str(blend))
    bpy.ops.wm.read_factory_settings(use_empty=True)  # another file in between: nothing carried over in memory
    assert len(bpy.context.scene.rubble_previews.entries) == 0

    bpy.ops.wm.open_mainfile(filepath=str(blend))
    entries = bpy.context.scene.rubble_previews.entries
    assert [(e.prompt, e.seed, e.frame) for e in entries] == [("look 1", 11, 2), ("look 2", 12, 3), ("look 0", 10, 1)]
    first = entries[0]
    assert first.negative_prompt == "not look 1" and first.strength == 1.0
    assert first.path == str(shot / "previews" / f"{1:016x}" / "frame_0002.png")
    assert first.image is not None and bpy.path.abspath(first.image.filepath) == first.path
    assert first.image.size[:] == (8, 8), "the still loads from its file"


def test_the_history_keeps_the_last_previews(registered, tmp_path):
    shot = tmp_path / "shot"
    for number in range(previews.HISTORY_LENGTH + 2):
        previews.add_entry(registered, _result(shot, f"{number:016x}", 1, f"look {number}", number), shot)
    entries = registered.rubble_previews.entries
    assert len(entries) == previews.HISTORY_LENGTH and entries[0].prompt == f"look {previews.HISTORY_LENGTH + 1}"
    assert f"Rubble Preview 0001 {0:016x}" not in bpy.data.images, "a dropped entry's image goes with it"


def test_restore_puts_a_previews_look_back_into_the_preset(registered, tmp_path):
    context = bpy.context
    assert bpy.ops.rubble.preset_load(key="shipped:default") == {"FINISHED"}
    shot = tmp_path / "shot"
    previews.add_entry(registered, _result(shot, "a" * 16, 1, "brick tower at dusk", 77, strength=0.6), shot)
    registered.rubble_look.prompt, registered.rubble_look.seed = "something else", 5

    assert bpy.ops.rubble.preview_restore(index=0) == {"FINISHED"}
    preset = presets.current_preset(context)
    assert (preset.look.prompt, preset.look.negative_prompt, preset.shot.seed, preset.look.strength) == (
        "brick tower at dusk", "not brick tower at dusk", 77, 0.6), "strength 0.6, not its float32 0.6000000238"

    # The panel holding another preset's look: the picked preset's look is taken, then the preview's.
    registered.rubble.preset_path = str(REPO / "presets" / "destruction_quake.toml")
    assert bpy.ops.rubble.preview_restore(index=0) == {"FINISHED"}
    preset = presets.current_preset(context)
    quake = load_preset(REPO / "presets" / "destruction_quake.toml")
    assert preset.look.prompt == "brick tower at dusk" and preset.shot.seed == 77 and preset.building == quake.building

    # A look the preset refuses changes nothing; a missing entry is refused.
    previews.add_entry(registered, _result(shot, "b" * 16, 1, "x" * 5000, 3), shot)
    with pytest.raises(RuntimeError, match="does not fit the picked preset"):
        bpy.ops.rubble.preview_restore(index=0)
    assert presets.current_preset(context).look.prompt == "brick tower at dusk"
    with pytest.raises(RuntimeError, match="no preview 5"):
        bpy.ops.rubble.preview_restore(index=5)


def test_preview_frame_runs_the_backend_and_lists_the_still(registered, tmp_path, backend_python, tiny_model_dir,
                                                           monkeypatch):
    monkeypatch.setenv("RUBBLE_BACKEND_PYTHON", str(backend_python))
    monkeypatch.setenv("RUBBLE_TINY_MODEL", str(tiny_model_dir))  # built once per session (conftest.py)
    settings = registered.rubble
    # Two frames: a preview needs every frame's passes (the control maps are normalised shot-wide).
    small = {**SMALL_SHOT, "shot": {**SMALL_SHOT["shot"], "frame_end": 2}}
    settings.preset_path = str(write_preset(tmp_path / "small.toml", **small))
    settings.shot_dir = str(tmp_path / "shot")
    settings.weights = "tiny"

    registered.frame_set(3)
    with pytest.raises(RuntimeError, match="Frame 3 is outside the shot"):
        bpy.ops.rubble.preview_frame()
    assert not (tmp_path / "shot" / "previews").exists()

    registered.frame_set(2)
    assert bpy.ops.rubble.preview_frame() == {"FINISHED"}
    (entry,) = registered.rubble_previews.entries
    assert entry.frame == 2 and entry.prompt == load_preset(tmp_path / "small.toml").look.prompt
    assert entry.path.startswith(str(tmp_path / "shot" / "previews")) and entry.image.size[:] == (96, 64)
    assert not (tmp_path / "shot" / "frames").exists(), "a preview generates no frames"
    assert "preview of frame 2 made" in settings.status


    class ListLayout(RecordingLayout):
        def template_list(self, list_type, list_id, data, name, active_data, active_name, **kw):
            self._check("template_list", kw)
            assert list_type in dir(bpy.types) and name in data.bl_rna.properties
            self.drawn.append(("list", len(getattr(data, name)), self.is_enabled()))

    layout = ListLayout()
    previews.PANELS[0].draw(types.SimpleNamespace(layout=layout), bpy.context)
    assert ("operator", "rubble.preview_frame", True) in layout.drawn and ("list", 1, True) in layout.drawn


def test_esc_stops_the_backend_preview(tmp_path, backend_python):
    """Esc sets the job's cancel_requested: the backend is told to stop and the run ends as cancelled."""
    from addon import pipeline

    job = pipeline.ShotJob(shot_dir=tmp_path / "shot", preset=load_preset(REPO / "presets" / "default.toml"),
                           backend_python=str(backend_python))
    job.cancel_requested = True
    with pytest.raises(pipeline.Cancelled, match="Preview cancelled; nothing of it was written"):
        list(previews.backend_steps(job, 1, {}))
