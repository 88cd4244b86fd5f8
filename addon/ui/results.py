"""Results in Blender after Generate: the edit plays in the sequencer, the last generated
frame shows in an Image Editor, the contact sheet is one click away.

An editor already open in a window is used first (the largest, when there are several); with a
user interface, a new window opens when none is. Headless (`blender -b`, the bpy module) no window
can open: an editor on the screen of the one window the bpy module keeps is still used (which is
how the tests see what is shown), else the images are only loaded as data-blocks. Each function
says what it did, for the report."""
from __future__ import annotations

from pathlib import Path

import bpy

from ..scene import ownership

LAST_FRAME_IMAGE = "Rubble Last Frame"
CONTACT_SHEET_IMAGE = "Rubble Contact Sheet"


def load_image(path: Path, name: str) -> bpy.types.Image:
    """The image data-block `name` showing `path`, reloaded: a rerun's frames replace the old."""
    image = bpy.data.images.get(name)
    if image is None:
        image = bpy.data.images.load(str(path), check_existing=False)
        image.name = name
    else:
        image.filepath = str(path)
        image.reload()
    return image


def _area_in_new_window(context, ui_type: str):
    """A new window (a copy of the first), its largest area turned into `ui_type`: the
    artist's own windows keep what they show."""
    with context.temp_override(window=context.window_manager.windows[0]):
        bpy.ops.wm.window_new()
    window = context.window_manager.windows[-1]
    area = max(window.screen.areas, key=lambda a: a.width * a.height)
    area.ui_type = ui_type
    return window, area


def _open_area(context, ui_type: str):
    """(window, area) of the largest `ui_type` editor open in a window (a UV Editor is not an
    Image Editor here: it shows a mesh's UVs), else (None, None)."""
    found = [(window, area) for window in context.window_manager.windows
             for area in window.screen.areas if area.ui_type == ui_type]
    return max(found, key=lambda wa: wa[1].width * wa[1].height, default=(None, None))


def _can_open_a_window(context) -> bool:
    return not bpy.app.background and bool(context.window_manager.windows)


def show_in_image_editor(context, image: bpy.types.Image) -> str | None:
    """Put `image` in an Image Editor (an open one, else one in a new window) and say where; None
    headless when no window shows one."""
    window, area = _open_area(context, "IMAGE_EDITOR")
    if area is None and _can_open_a_window(context):
        window, area = _area_in_new_window(context, "IMAGE_EDITOR")
    if area is None:
        return None
    area.spaces.active.image = image
    return f"in the Image Editor of the '{window.workspace.name}' workspace"


def not_shown(image: bpy.types.Image) -> str:
    return (f"loaded as the image '{image.name}' (Blender runs in the background: no Image Editor is open "
            "and none can be)")


def play_edit(context) -> str | None:
    """Play Rubble's edit in a Sequencer (an open one, else a new window's with its preview): that
    window shows the edit scene from its first frame. Says what it did; None without an edit, or
    headless when no window shows a Sequencer."""
    edit = ownership.find_scene(ownership.EDIT)
    if edit is None:
        return None
    window, area = _open_area(context, "SEQUENCE_EDITOR")
    if area is None and _can_open_a_window(context):
        window, area = _area_in_new_window(context, "SEQUENCE_EDITOR")
        area.spaces.active.view_type = "SEQUENCER_PREVIEW"
    if area is None:
        return None
    for name in ("preset_path", "shot_dir", "weights"):  # its Rubble panel shows the same shot
        setattr(edit.rubble, name, getattr(context.scene.rubble, name))
    window.scene = edit
    edit.frame_set(edit.frame_start)
    with context.temp_override(window=window, area=area):
        playing = context.screen.is_animation_playing or bpy.ops.screen.animation_play() == {"FINISHED"}
    return (f"the edit '{edit.name}' {'plays' if playing else 'is ready to play'} in the Sequencer of the "
            f"'{window.workspace.name}' workspace")


def show(context, shot_dir: Path, frames: range) -> str | None:
    """After a run that generated: the last frame in an Image Editor, the edit playing. Says what it
    did (None when there is no last frame on disk)."""
    last = Path(shot_dir) / "frames" / f"{frames[-1]:04d}.png"
    if not last.is_file():
        return None
    image = load_image(last, LAST_FRAME_IMAGE)
    try:
        where = show_in_image_editor(context, image)
        playing = play_edit(context)
    except RuntimeError as exc:  # a window layout Blender refuses: the run itself succeeded
        return f"Rubble: the last frame is the image '{image.name}'; it could not be shown ({exc})."
    said = [f"Rubble: the last frame, {last.name}, is {where or not_shown(image)}"]
    if playing:
        said.append(playing)
    return "; ".join(said) + "."


class RUBBLE_OT_open_contact_sheet(bpy.types.Operator):
    """Open the contact sheet (every generated frame side by side) in an Image Editor"""

    bl_idname = "rubble.open_contact_sheet"
    bl_label = "Contact Sheet"

    @classmethod
    def poll(cls, context):
        from .shot_state import overview
        view = overview(context)
        if view.shot_dir is None or not (Path(view.shot_dir) / "contact_sheet.png").is_file():
            cls.poll_message_set("No contact sheet yet: run Generate.")
            return False
        return True

    def execute(self, context):
        from .shot_state import overview
        path = Path(overview(context).shot_dir) / "contact_sheet.png"
        image = load_image(path, CONTACT_SHEET_IMAGE)
        where = show_in_image_editor(context, image)
        self.report({"INFO"}, f"Contact sheet {path} is {where or not_shown(image)}")
        return {"FINISHED"}


class RUBBLE_OT_show_result(bpy.types.Operator):
    """Play the edit in the sequencer and show the last generated frame in an Image Editor"""

    bl_idname = "rubble.show_result"
    bl_label = "Show Result"

    @classmethod
    def poll(cls, context):
        from .shot_state import overview
        view = overview(context)
        if view.states is None or view.states["generate"].state == "missing":
            cls.poll_message_set("No generated frames yet: run Generate.")
            return False
        return True

    def execute(self, context):
        from .shot_state import overview
        view = overview(context)
        said = show(context, Path(view.shot_dir), view.frames)
        if said is None:
            self.report({"WARNING"}, "The generated frames are not on disk: run Generate again.")
            return {"CANCELLED"}
        self.report({"INFO"}, said)
        return {"FINISHED"}
