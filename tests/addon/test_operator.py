"""Generate Final as a script calls it (execute): the same stages, inside the artist's own
file, which keeps its scene and objects; the shot gets a scene of its own. And as the UI
drives it (modal): every way out stops the timer, releases the run and says why."""
import types

import bpy
import pytest

import addon
from addon import pipeline
from addon.ui.operators import RUBBLE_OT_generate_final, resolve_shot_dir
from conftest import SMALL_SHOT, write_preset


@pytest.fixture
def registered():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon.register()
    yield
    RUBBLE_OT_generate_final.running_job = None  # a failed test must not refuse the next one's run
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
    viewer = max(bpy.context.window.screen.areas, key=lambda a: a.width * a.height)
    viewer.ui_type = "IMAGE_EDITOR"  # the artist's layout has an Image Editor (the bpy module keeps one window)

    assert bpy.ops.rubble.generate_final() == {"FINISHED"}

    assert (tmp_path / "shot" / "final.mp4").is_file()
    assert bpy.context.scene == artist_scene and "My Empty" in artist_scene.objects
    assert {"Rubble", "Rubble Edit"} <= set(bpy.data.scenes.keys())
    # The result is in Blender: the last frame in the artist's Image Editor.
    assert viewer.spaces.active.image == bpy.data.images["Rubble Last Frame"]
    assert viewer.spaces.active.image.filepath == str(tmp_path / "shot" / "frames" / "0004.png")


def test_generate_final_refuses_a_bad_preset_before_any_work(registered, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('schema = "rubble.preset/1"\n[shot]\nfps = "fast"\n')
    bpy.context.scene.rubble.preset_path = str(bad)
    bpy.context.scene.rubble.shot_dir = str(tmp_path / "shot")
    with pytest.raises(RuntimeError, match="shot.fps: expected int"):
        bpy.ops.rubble.generate_final()
    assert not (tmp_path / "shot").exists()


# --- the shot folder of a file that was never saved (issue 14, item 4) ---------------

def test_an_unsaved_files_default_shot_folder_is_refused(registered, tmp_path, backend_python, monkeypatch):
    monkeypatch.setenv("RUBBLE_BACKEND_PYTHON", str(backend_python))
    monkeypatch.chdir(tmp_path)  # where "//rubble_shot" used to land: Blender's working directory
    settings = bpy.context.scene.rubble
    assert bpy.data.filepath == "" and settings.shot_dir == "//rubble_shot"
    settings.preset_path = str(write_preset(tmp_path / "small.toml", **SMALL_SHOT))
    with pytest.raises(RuntimeError, match="save the .blend first, or pick a shot folder"):
        bpy.ops.rubble.generate_final()
    assert not (tmp_path / "rubble_shot").exists() and "Rubble" not in bpy.data.scenes
    settings.shot_dir = "relative/shot"
    with pytest.raises(RuntimeError, match="is a relative path: pick a shot folder"):
        bpy.ops.rubble.generate_final()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "artist.blend"))
    assert resolve_shot_dir("//rubble_shot") == str(tmp_path / "rubble_shot")


# --- the modal path, driven as Blender drives it: a timer event per step --------------

class Harness:
    """The operator's own functions on a plain instance. Python cannot create a bpy
    Operator, and headless Blender never starts a modal one (INVOKE falls back to
    execute); so the functions run here with the real context and window manager, and
    only `modal_handler_add` (which needs a real Operator) is left out."""

    def __init__(self):
        self.reports = []
        self._timer = self._job = self._steps = None

    def report(self, level, message):
        self.reports.append((set(level), message))


for _name in ("stages", "progress_stages", "_begin", "_start_ticking", "_done_message", "_finished", "execute",
              "modal", "cancel", "_end"):
    setattr(Harness, _name, getattr(RUBBLE_OT_generate_final, _name))

TIMER, ESC = types.SimpleNamespace(type="TIMER"), types.SimpleNamespace(type="ESC")


@pytest.fixture
def started(registered, tmp_path, backend_python, monkeypatch) -> Harness:
    """A Generate Final of the small shot, begun as invoke begins it."""
    monkeypatch.setenv("RUBBLE_BACKEND_PYTHON", str(backend_python))
    settings = bpy.context.scene.rubble
    settings.preset_path = str(write_preset(tmp_path / "small.toml", **SMALL_SHOT))
    settings.shot_dir = str(tmp_path / "shot")
    settings.weights = "tiny"
    op = Harness()
    assert op._begin(bpy.context)
    op._start_ticking(bpy.context)
    assert op._timer is not None
    return op


def _assert_ended_cleanly(op, level, message_part):
    assert op._timer is None, "the timer was left running"
    assert op._steps is None, "the job's generator was left open"
    assert RUBBLE_OT_generate_final.running_job is None, "the run was not released"
    assert op.reports and op.reports[-1][0] == level, op.reports
    assert message_part in op.reports[-1][1], op.reports
    assert bpy.context.scene.rubble.status == op.reports[-1][1].splitlines()[0]


def _tick_until_scene_exists(op):
    for _ in range(10):
        assert op.modal(bpy.context, TIMER) == {"RUNNING_MODAL"}, op.reports
        if op._job.scene is not None:
            return op._job.scene
    raise AssertionError("the build stage never made the shot's scene")


def test_a_second_run_is_refused_and_keeps_the_first_jobs_scene(started):
    scene = _tick_until_scene_exists(started)
    with pytest.raises(RuntimeError, match="already generating"):
        bpy.ops.rubble.generate_final()
    assert scene.name == "Rubble" and bpy.data.scenes.get("Rubble") == scene, "the second run touched the scene"
    assert started.modal(bpy.context, ESC) == {"RUNNING_MODAL"}
    for _ in range(10):
        result = started.modal(bpy.context, TIMER)
        if result != {"RUNNING_MODAL"}:
            break
    assert result == {"CANCELLED"}
    _assert_ended_cleanly(started, {"WARNING"}, "Cancelled; finished work was kept")


def test_an_unexpected_error_ends_the_run_and_keeps_its_traceback(started, capsys):
    def stage_with_a_bug():
        yield pipeline.Progress("build", 0, 1, "building")
        raise KeyError("boom")

    started._steps.close()
    started._steps = stage_with_a_bug()
    assert started.modal(bpy.context, TIMER) == {"RUNNING_MODAL"}
    assert bpy.context.scene.rubble.status == "build: building"
    assert started.modal(bpy.context, TIMER) == {"CANCELLED"}
    _assert_ended_cleanly(started, {"ERROR"}, "unexpected error (KeyError: 'boom')")
    assert "Traceback" in capsys.readouterr().err


def test_a_scene_removed_while_it_runs_ends_the_run_with_the_reason(started):
    bpy.data.scenes.remove(_tick_until_scene_exists(started))
    for _ in range(10):
        result = started.modal(bpy.context, TIMER)
        if result != {"RUNNING_MODAL"}:
            break
    assert result == {"CANCELLED"}
    _assert_ended_cleanly(started, {"ERROR"}, "removed while it ran")


def test_blender_cancelling_the_operator_cleans_up(started):
    _tick_until_scene_exists(started)
    started.cancel(bpy.context)
    assert started._job.cancel_requested
    _assert_ended_cleanly(started, {"WARNING"}, "cancelled")


def test_a_file_error_in_execute_is_reported_and_releases_the_run(registered, tmp_path, backend_python, monkeypatch):
    monkeypatch.setenv("RUBBLE_BACKEND_PYTHON", str(backend_python))
    settings = bpy.context.scene.rubble
    settings.preset_path = str(write_preset(tmp_path / "small.toml", **SMALL_SHOT))
    (tmp_path / "taken").write_text("a file where the shot folder should go")
    settings.shot_dir = str(tmp_path / "taken")
    with pytest.raises(RuntimeError, match="a file could not be read or written"):
        bpy.ops.rubble.generate_final()
    assert RUBBLE_OT_generate_final.running_job is None
    assert settings.status.startswith("Rubble stopped: a file could not be read or written")
