"""Generate Final as a script calls it (execute): the same stages, inside the artist's own
file, which keeps its scene and objects; the shot gets a scene of its own."""
import bpy
import pytest

import addon
from conftest import SMALL_SHOT, write_preset


@pytest.fixture
def registered():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon.register()
    yield
    addon.unregister()


def test_generate_final_runs_the_pipeline_in_the_artists_file(registered, tmp_path, backend_python, monkeypatch):
    monkeypatch.setenv("RUBBLE_BACKEND_PYTHON", str(backend_python))
    monkeypatch.setenv("RUBBLE_TINY_MODEL", str(tmp_path / "tiny-model"))
    artist_scene = bpy.context.scene
    mine = bpy.data.objects.new("My Empty", None)
    artist_scene.collection.objects.link(mine)
    settings = artist_scene.rubble
    settings.preset_path = str(write_preset(tmp_path / "small.toml", **SMALL_SHOT))
    settings.shot_dir = str(tmp_path / "shot")
    settings.weights = "tiny"

    assert bpy.ops.rubble.generate_final() == {"FINISHED"}

    assert (tmp_path / "shot" / "final.mp4").is_file()
    assert bpy.context.scene == artist_scene and "My Empty" in artist_scene.objects
    assert {"Rubble", "Rubble Edit"} <= set(bpy.data.scenes.keys())


def test_generate_final_refuses_a_bad_preset_before_any_work(registered, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('schema = "rubble.preset/1"\n[shot]\nfps = "fast"\n')
    bpy.context.scene.rubble.preset_path = str(bad)
    bpy.context.scene.rubble.shot_dir = str(tmp_path / "shot")
    with pytest.raises(RuntimeError, match="shot.fps: expected int"):
        bpy.ops.rubble.generate_final()
    assert not (tmp_path / "shot").exists()
