"""The panel (issue 20 item 1): each stage's state from the stamps, the buttons greyed out
with the reason, and the draw code run for every state.

Blender makes no UILayout without a window, so the panel's own draw function draws into
`RecordingLayout`, which checks every call against the real UILayout's RNA (function and
keyword names, icon names), every property against the data's RNA and every operator
against the registered operators, and records what was drawn and whether it was enabled.
The polls are the real operators' polls."""
import os
import types

import bpy
import pytest

import addon
from addon import pipeline
from addon.core import stage_status
from addon.core.preset import load_preset
from addon.core.stage_status import MISSING, STALE, UP_TO_DATE, StageKeys, blocked_reason, stage_states
from addon.core.stamps import Stamps
from addon.scene import ownership
from addon.ui import panel, shot_state
from addon.ui.operators import RUBBLE_OT_generate_final
from conftest import SMALL_SHOT, write_preset

UILAYOUT = bpy.types.UILayout.bl_rna.functions
ICONS = set(UILAYOUT["label"].parameters["icon"].enum_items.keys())


class RecordingLayout:
    def __init__(self, parent=None):
        self.parent, self.enabled = parent, True
        self.drawn = parent.drawn if parent else []

    def _check(self, function, kwargs):
        unknown = set(kwargs) - set(UILAYOUT[function].parameters.keys())
        assert not unknown, f"UILayout.{function} has no {unknown}"
        assert kwargs.get("icon", "NONE") in ICONS, f"no icon {kwargs['icon']!r}"

    def is_enabled(self):
        return self.enabled and (self.parent is None or self.parent.is_enabled())

    def _child(self, function, **kwargs):
        self._check(function, kwargs)
        return RecordingLayout(self)

    def row(self, **kw):
        return self._child("row", **kw)

    def column(self, **kw):
        return self._child("column", **kw)

    def box(self):
        return self._child("box")

    def split(self, **kw):
        return self._child("split", **kw)

    def prop(self, data, name, **kw):
        self._check("prop", kw)
        assert name in data.bl_rna.properties, f"{data} has no property {name}"
        self.drawn.append(("prop", name, self.is_enabled()))

    def operator(self, idname, **kw):
        self._check("operator", kw)
        module, name = idname.split(".")
        getattr(getattr(bpy.ops, module), name).get_rna_type()  # raises KeyError if not registered
        self.drawn.append(("operator", idname, self.is_enabled()))
        return types.SimpleNamespace()

    def label(self, **kw):
        self._check("label", kw)
        assert isinstance(kw.get("text", ""), str)
        self.drawn.append(("label", kw.get("text", ""), self.is_enabled()))


def draw():
    """Draw the 3D view panel (its own draw method) and return what it drew."""
    shot_state.invalidate()
    layout = RecordingLayout()
    panel.RUBBLE_PT_shot.draw(types.SimpleNamespace(layout=layout), bpy.context)
    return layout.drawn


def enabled(drawn, idname):
    (state,) = [on for kind, name, on in drawn if kind == "operator" and name == idname]
    return state


def labels(drawn):
    return [name for kind, name, _ in drawn if kind == "label"]


def states(drawn):
    """The state column, stage by stage."""
    return [t for t in labels(drawn) if t.split(" (")[0] in (UP_TO_DATE, STALE, MISSING, "unknown")]


@pytest.fixture
def session(tmp_path, backend_python, monkeypatch):
    monkeypatch.setenv("RUBBLE_BACKEND_PYTHON", str(backend_python))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon.register()
    settings = bpy.context.scene.rubble
    settings.preset_path = str(write_preset(tmp_path / "small.toml", **SMALL_SHOT))
    settings.shot_dir = str(tmp_path / "shot")
    yield settings
    RUBBLE_OT_generate_final.running_job = None
    addon.unregister()


def _pretend_done(shot_dir, job):
    """Stamps and outputs as a finished run leaves them (their contents do not matter here)."""
    stamps = Stamps(shot_dir)
    stamps.record("bake", job.scene_key())
    for f in job.shot_frames():
        stamps.record("passes", job.pass_key(), item=str(f))
    stamps.record("generate", job.generate_key())
    stamps.record("composite", job.composite_key())
    names = ["shot.blend", "shot.json", "provenance.json", "contact_sheet.png", "final.mp4",
             *(f"passes/{f:04d}.exr" for f in job.shot_frames()), *(f"frames/{f:04d}.png" for f in job.shot_frames())]
    for name in names:
        (shot_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (shot_dir / name).write_bytes(b"x")
    scene = ownership.new_scene("Rubble", ownership.SHOT)
    scene["rubble_scene_key"], scene["rubble_camera_key"] = job.scene_key(), job.camera_key()
    scene["rubble_shot_dir"] = str(job.shot_dir)


def test_states_from_the_stamps(tmp_path):
    keys = StageKeys(scene="s1", camera="k1", passes="p1", generate="g1", composite="c1")
    frames = range(1, 5)
    assert {s.state for s in stage_states(tmp_path, keys, frames, None).values()} == {MISSING}
    stamps = Stamps(tmp_path)
    stamps.record("bake", "s1")
    stamps.record("passes", "p1", item="1")
    stamps.record("passes", "p0", item="2")  # rendered with other render settings
    (tmp_path / "passes").mkdir()
    for f in (1, 2):
        (tmp_path / "passes" / f"{f:04d}.exr").write_bytes(b"x")
    stamps.record("composite", "c1")
    states = stage_states(tmp_path, keys, frames, ("s0", "k1"))
    assert states["build"] == stage_status.StageState(STALE, "preset changed")
    assert states["bake"] == stage_status.StageState(STALE, "shot.blend was deleted")
    assert states["passes"] == stage_status.StageState(STALE, "1 of 4 frames up to date")
    assert states["generate"].state == MISSING
    assert states["composite"] == stage_status.StageState(STALE, "final.mp4 was deleted")
    assert blocked_reason("generate", states, None, None, None) == \
        "Render the passes first (passes: stale (1 of 4 frames up to date))."
    assert blocked_reason("composite", states, None, None, None).startswith("Generate the frames first")
    assert blocked_reason("passes", states, None, None, None) is None
    assert blocked_reason("final", states, None, "No backend: ...", None) == "No backend: ..."
    assert blocked_reason("passes", states, None, None, "/shots/a").startswith("Rubble is already generating /shots/a")


def test_panel_draws_every_state_and_greys_out_what_cannot_run(session, tmp_path):
    shot_dir = tmp_path / "shot"
    # Nothing done yet: every stage missing; Generate needs passes, Composite needs frames.
    drawn = draw()
    assert states(drawn) == ["missing (not in this file)"] + ["missing"] * 4
    assert enabled(drawn, "rubble.generate_final") and enabled(drawn, "rubble.stage_passes")
    assert not enabled(drawn, "rubble.stage_generate") and not enabled(drawn, "rubble.stage_composite")
    assert "Render the passes first (passes: missing)." in labels(drawn)
    assert not bpy.ops.rubble.stage_generate.poll() and bpy.ops.rubble.stage_passes.poll()
    assert not bpy.ops.rubble.open_contact_sheet.poll()

    # Everything done: all up to date, all enabled.
    job = pipeline.ShotJob(shot_dir=shot_dir, preset=load_preset(session.preset_path))
    _pretend_done(shot_dir, job)
    drawn = draw()
    assert states(drawn) == ["up to date"] * 2 + ["up to date (4 frames)"] + ["up to date"] * 2
    assert all(on for kind, name, on in drawn if kind == "operator")
    assert bpy.ops.rubble.stage_composite.poll() and bpy.ops.rubble.open_contact_sheet.poll()

    # The render section changes: the scene stays, everything from the passes on is stale.
    session.preset_path = str(write_preset(tmp_path / "more.toml", **{**SMALL_SHOT, "render": {"samples": 3}}))
    drawn = draw()
    assert states(drawn) == [
        "up to date", "up to date", "stale (0 of 4 frames up to date)",
        "stale (inputs changed)", "stale (inputs changed)"]
    assert not enabled(drawn, "rubble.stage_generate")

    # The camera alone changes: the build re-aims it and the bake is kept; the passes and after are stale.
    session.preset_path = str(write_preset(tmp_path / "lens.toml", **{**SMALL_SHOT, "camera": {"lens_mm": 50.0}}))
    drawn = draw()
    assert states(drawn) == [
        "stale (camera changed)", "up to date", "stale (0 of 4 frames up to date)",
        "stale (inputs changed)", "stale (inputs changed)"]

    # A run in progress greys out every run button, saying why.
    RUBBLE_OT_generate_final.running_job = types.SimpleNamespace(shot_dir=shot_dir)
    drawn = draw()
    assert not any(on for kind, name, on in drawn if kind == "operator" and name.startswith("rubble.stage_"))
    assert not enabled(drawn, "rubble.generate_final")
    assert any(t.startswith(f"Rubble is already generating {shot_dir}") for t in labels(drawn))
    RUBBLE_OT_generate_final.running_job = None

    # Settings that cannot work (an unsaved file's //folder; a broken preset): said once, all greyed.
    good_folder = session.shot_dir
    for change, said in ((lambda: session.property_unset("shot_dir"), "save the .blend first"),  # "//rubble_shot"
                         (lambda: setattr(session, "preset_path", str(tmp_path / "absent.toml")), "absent.toml")):
        session.shot_dir = good_folder
        change()
        drawn = draw()
        runs = [on for kind, name, on in drawn
                if kind == "operator" and name.startswith(("rubble.stage_", "rubble.generate"))]
        assert len(runs) == 6 and not any(runs)
        assert sum(said in t for t in labels(drawn)) == 2  # under Generate Final, and once for the stages
        assert states(drawn) == ["unknown"] * 5


def test_the_same_panel_is_in_the_sequencer(session):
    assert bpy.types.RUBBLE_PT_shot_sequencer.bl_space_type == "SEQUENCE_EDITOR"
    layout = RecordingLayout()
    panel.RUBBLE_PT_shot_sequencer.draw(types.SimpleNamespace(layout=layout), bpy.context)
    assert ("operator", "rubble.generate_final", True) in layout.drawn


def _png(path, size=(8, 4)):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = bpy.data.images.new("png", *size)
    image.filepath_raw, image.file_format = str(path), "PNG"
    image.save()
    bpy.data.images.remove(image)


def test_results_are_one_click_away(session, tmp_path):
    """After Generate the last frame goes to an Image Editor open in a window and the edit plays in
    a Sequencer; the contact sheet is one click away. Headless Blender opens no window, but the bpy
    module keeps one whose areas can be any editor: what they show is what an artist would see.
    With no Image Editor open the images are only loaded, and the report says so."""
    from addon.ui import results

    shot_dir = tmp_path / "shot"
    job = pipeline.ShotJob(shot_dir=shot_dir, preset=load_preset(session.preset_path))
    _pretend_done(shot_dir, job)
    _png(shot_dir / "contact_sheet.png", (16, 4))
    _png(shot_dir / "frames" / "0004.png")
    shot_state.invalidate()
    said = results.show(bpy.context, shot_dir, job.shot_frames())  # the factory layout has no Image Editor
    assert said == ("Rubble: the last frame, 0004.png, is loaded as the image 'Rubble Last Frame' (Blender runs in "
                    "the background: no Image Editor is open and none can be).")
    assert bpy.ops.rubble.open_contact_sheet() == {"FINISHED"}
    sheet = bpy.data.images["Rubble Contact Sheet"]
    assert sheet.filepath == str(shot_dir / "contact_sheet.png") and tuple(sheet.size) == (16, 4)

    window = bpy.context.window_manager.windows[0]
    viewer, timeline = sorted(window.screen.areas, key=lambda a: a.width * a.height)[-2:]
    viewer.ui_type, timeline.ui_type = "IMAGE_EDITOR", "SEQUENCE_EDITOR"
    edit = ownership.new_scene("Rubble Edit", ownership.EDIT)
    assert bpy.ops.rubble.show_result() == {"FINISHED"}
    last = viewer.spaces.active.image
    assert last.name == "Rubble Last Frame" and last.filepath == str(shot_dir / "frames" / "0004.png")
    assert tuple(last.size) == (8, 4)
    assert window.scene == edit and edit.rubble.shot_dir == session.shot_dir  # the edit, with the shot's panel
    said = results.show(bpy.context, shot_dir, job.shot_frames())
    assert said.startswith("Rubble: the last frame, 0004.png, is in the Image Editor of the 'Layout' workspace; "
                           "the edit 'Rubble Edit' ") and said.endswith(" in the Sequencer of the 'Layout' workspace.")
    assert bpy.ops.rubble.open_contact_sheet() == {"FINISHED"}  # one click: the same Image Editor
    assert viewer.spaces.active.image == sheet


def test_preferences_draw_a_running_and_a_finished_setup(tmp_path):
    """The Preferences' setup section (live log with Cancel, then the Doctor's report), drawn
    into the recording layout by the add-on's own draw code, with the checkout enabled as an add-on."""
    import sys

    from addon.core import installer
    from addon.ui import preferences

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.preferences.addon_enable(module="addon")
    os.environ["RUBBLE_SERVE_FILE"] = str(tmp_path / "no-server.json")
    try:
        prefs = bpy.context.preferences.addons["addon"].preferences
        slow = [sys.executable, "-c", "import time; print('step 1', flush=True); time.sleep(30)"]
        job = installer.CommandsRun([slow], tmp_path / "setup.log")
        preferences.setup.job, preferences.setup.title = job, "Install Backend (cpu: test)"
        layout = RecordingLayout()
        preferences.draw_setup(layout, prefs)  # what RubblePreferences.draw draws
        assert ("operator", "rubble.cancel_setup", True) in layout.drawn
        assert ("label", "Warm backend: not running (each Generate starts a backend process)", True) in layout.drawn
        assert ("operator", "rubble.start_warm_backend", True) in layout.drawn
        assert ("label", "Install Backend (cpu: test): running", True) in layout.drawn
        assert not bpy.ops.rubble.install_backend.poll() and bpy.ops.rubble.cancel_setup.poll()
        assert bpy.ops.rubble.cancel_setup() == {"FINISHED"}
        preferences.setup.report = "Rubble backend doctor\n  torch        MISSING"
        layout = RecordingLayout()
        preferences.draw_setup(layout, prefs)  # what RubblePreferences.draw draws
        assert ("label", "Install Backend (cpu: test): cancelled", True) in layout.drawn
        assert ("label", "Cancelled.", True) in layout.drawn
        assert ("label", "  torch        MISSING", True) in layout.drawn
        assert not any(name == "rubble.cancel_setup" for _, name, _ in layout.drawn)
        assert prefs.backend_python == ""
    finally:
        del os.environ["RUBBLE_SERVE_FILE"]
        preferences.setup.job, preferences.setup.report = None, ""
        bpy.ops.preferences.addon_disable(module="addon")


def test_without_a_backend_generate_is_greyed_out_with_the_command_that_makes_one(session, monkeypatch, tmp_path):
    monkeypatch.setenv("RUBBLE_BACKEND_PYTHON", "")
    from addon.core import backend
    monkeypatch.setattr(backend, "_default_env", tmp_path / "no-backend")
    drawn = draw()
    assert not enabled(drawn, "rubble.generate_final") and not enabled(drawn, "rubble.stage_generate")
    assert enabled(drawn, "rubble.stage_passes")
    assert any(t.startswith("No backend: Preferences > Add-ons > Rubble > Install Backend.") for t in labels(drawn))
    with pytest.raises(RuntimeError, match=r"backend environment was not found(.|\n)*-m venv"):
        bpy.ops.rubble.generate_final()
