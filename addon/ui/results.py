"""Results in Blender after Generate: the edit plays in the sequencer, the last generated
frame shows in an Image Editor, the contact sheet is one click away.

Only when Blender has a user interface: headless (`blender -b`, the bpy module) the images
are loaded as data-blocks and nothing else changes."""
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


def _find_area(context, area_type: str):
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == area_type:
                return window, area
    return None, None


def show_in_image_editor(context, image: bpy.types.Image) -> bool:
    """Put `image` in an Image Editor: the first one open, else one in a new window. False headless."""
    if bpy.app.background or not context.window_manager.windows:
        return False
    _, area = _find_area(context, "IMAGE_EDITOR")
    if area is None:
        _, area = _area_in_new_window(context, "IMAGE_EDITOR")
    area.spaces.active.image = image
    return True


def play_edit(context) -> bool:
    """Play Rubble's edit in a Sequencer: the window that has one shows the edit scene, else a
    new window with a Sequencer and its preview does. False headless."""
    edit = ownership.find_scene(ownership.EDIT)
    if edit is None or bpy.app.background or not context.window_manager.windows:
        return False
    window, area = _find_area(context, "SEQUENCE_EDITOR")
    if area is None:
        window, area = _area_in_new_window(context, "SEQUENCE_EDITOR")
        area.spaces.active.view_type = "SEQUENCER_PREVIEW"
    for name in ("preset_path", "shot_dir", "weights"):  # its Rubble panel shows the same shot
        setattr(edit.rubble, name, getattr(context.scene.rubble, name))
    window.scene = edit
    edit.frame_set(edit.frame_start)
    with context.temp_override(window=window, area=area):
        if not context.screen.is_animation_playing:
            bpy.ops.screen.animation_play()
    return True


def show(context, shot_dir: Path, frames: range) -> bpy.types.Image | None:
    """After a run that generated: the last frame in an Image Editor, the edit playing."""
    last = Path(shot_dir) / "frames" / f"{frames[-1]:04d}.png"
    if not last.is_file():
        return None
    image = load_image(last, LAST_FRAME_IMAGE)
    try:
        show_in_image_editor(context, image)
        play_edit(context)
    except RuntimeError as exc:  # a window layout Blender refuses: the run itself succeeded
        print(f"Rubble: could not show the result ({exc}); use Show Result in the panel.")
    return image


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
        shown = show_in_image_editor(context, image)
        self.report({"INFO"}, f"Contact sheet: {path}" + ("" if shown else f" (loaded as image '{image.name}')"))
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
        image = show(context, Path(view.shot_dir), view.frames)
        if image is None:
            self.report({"WARNING"}, "The generated frames are not on disk: run Generate again.")
            return {"CANCELLED"}
        return {"FINISHED"}
