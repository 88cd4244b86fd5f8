"""Look previews (issue 22 items 1 and 4): "Preview Frame" renders one still of the scene's current
frame with the look edited in the panel (`python -m inference preview`), shows it in an Image
Editor and adds it to a history saved in the .blend; one click on an entry puts its look
(prompt, negative prompt, seed, strength) back into the panel's look, which runs are made with.

The button runs the shot's stages up to the passes first (each skipped when up to date: the
control maps are normalised over the whole shot, so every frame's passes are needed), then the
backend command, with the progress bar and Esc of Generate Final (operators.PipelineRun)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import bpy

from .. import pipeline
from ..core.preset import PresetError, load_preset
from . import operators, presets, results, shot_state

HISTORY_LENGTH = 12  # the last previews kept in the list (older entries drop off)
STAGE = "preview"


class RubblePreview(bpy.types.PropertyGroup):
    """One preview: the look it was made with, where the still is, and the still as an image."""

    preview_id: bpy.props.StringProperty(name="Preview", description="The backend's id of the preview (previews/<id>/)")
    frame: bpy.props.IntProperty(name="Frame")
    prompt: bpy.props.StringProperty(name="Prompt")
    negative_prompt: bpy.props.StringProperty(name="Negative")
    seed: bpy.props.IntProperty(name="Seed", min=0, max=presets.INT_MAX)
    strength: bpy.props.FloatProperty(name="Strength", min=0.0, max=1.0, default=1.0)
    path: bpy.props.StringProperty(name="Still", subtype="FILE_PATH")
    image: bpy.props.PointerProperty(name="Image", type=bpy.types.Image)  # its preview is the thumbnail


class RubblePreviewHistory(bpy.types.PropertyGroup):
    entries: bpy.props.CollectionProperty(type=RubblePreview)  # newest first
    active_index: bpy.props.IntProperty(name="Preview", default=0)


def _image_name(preview_id: str, frame: int) -> str:
    return f"Rubble Preview {frame:04d} {preview_id}"


def add_entry(scene, result: dict, shot_dir: Path) -> RubblePreview:
    """Record the backend's `preview` result at the top of `scene`'s history (a preview already
    listed moves to the top), with its still loaded as an image; the oldest beyond
    HISTORY_LENGTH drop off."""
    history = scene.rubble_previews
    path = Path(shot_dir) / result["outputs"][0]
    for index, old in enumerate(history.entries):
        if old.preview_id == result["id"]:
            history.entries.move(index, 0)
            history.active_index = 0
            return history.entries[0]
    look = result["look"]
    entry = history.entries.add()
    entry.preview_id, entry.frame, entry.path = result["id"], result["frame"], str(path)
    entry.prompt, entry.negative_prompt = look["prompt"], look["negative_prompt"]
    entry.seed, entry.strength = min(int(result["seed"]), presets.INT_MAX), float(look.get("strength", 1.0))
    entry.image = results.load_image(path, _image_name(result["id"], result["frame"]))
    entry.image.preview_ensure()  # the list's thumbnail
    history.entries.move(len(history.entries) - 1, 0)
    while len(history.entries) > HISTORY_LENGTH:
        dropped = history.entries[-1].image
        history.entries.remove(len(history.entries) - 1)
        if dropped is not None and dropped.users == 0:
            bpy.data.images.remove(dropped)
    history.active_index = 0
    return history.entries[0]


class PreviewUnrestorable(ValueError):
    """The look cannot be put back (no preset picked, or the look is not valid in it)."""


def restore(context, entry: RubblePreview) -> None:
    """Put `entry`'s look into the panel's look of the picked preset (what runs are made with).
    Raises PreviewUnrestorable, changing nothing."""
    path = presets.preset_path(context)
    if path is None:
        raise PreviewUnrestorable("No preset is picked: pick one in the Preset section, then restore the look.")
    look = context.scene.rubble_look
    before = {key: getattr(look, key) for key in ("prompt", "negative_prompt", "seed", "strength", "source")}
    if look.source != str(path):  # the panel holds another preset's look: start from this one's
        presets.fill_look(context, load_preset(path), path)
    look.prompt, look.negative_prompt, look.seed = entry.prompt, entry.negative_prompt, entry.seed
    look.strength = entry.strength
    try:
        presets.current_preset(context)
    except PresetError as exc:
        for key, value in before.items():
            setattr(look, key, value)
        raise PreviewUnrestorable(f"The preview's look does not fit the picked preset: {exc}") from None
    return []


# --- operators ----------------------------------------------------------------------

def backend_steps(job: pipeline.ShotJob, frame: int, done: dict) -> Iterator[pipeline.Progress]:
    """`python -m inference preview SHOT --frame N`, relaying its progress; its result goes in `done`.
    Esc (job.cancel_requested) stops it between steps."""
    args = ["preview", str(job.shot_dir), "--frame", str(frame)]
    try:
        (done["result"],) = yield from pipeline.relay_backend(job, STAGE, args, log_name="preview.log")
    except pipeline.Cancelled:
        raise pipeline.Cancelled("Preview cancelled; nothing of it was written (the passes rendered are kept).") from None


class RUBBLE_OT_preview_frame(operators.PipelineRun, bpy.types.Operator):
    """Render one still of the current frame with this look (passes first when needed), show it and add it to the previews (Esc cancels)"""

    bl_idname = "rubble.preview_frame"
    bl_label = "Preview Frame"
    panel_stage = "passes"
    stages = ("passes",)
    progress_stages = (*pipeline.STAGES, STAGE)

    @classmethod
    def poll(cls, context):
        reason = blocked_reason(context)
        if reason:
            cls.poll_message_set(reason)
        return reason is None

    def _begin(self, context) -> bool:
        if not super()._begin(context):
            return False
        frame, shot = context.scene.frame_current, self._job.shot_frames()
        if frame not in shot:
            self._end(context, {"ERROR"}, f"Frame {frame} is outside the shot (frames {shot.start}-{shot.stop - 1}): "
                                          "move to a frame of the shot, then preview.")
            return False
        self._frame, self._result = frame, {}
        self._steps = self._with_preview(self._job, frame)
        return True

    def _with_preview(self, job, frame):
        yield from pipeline.run(job)
        yield from backend_steps(job, frame, self._result)

    def _done_message(self) -> str:
        result = self._result["result"]
        return (f"Rubble: preview of frame {self._frame} {'reused' if result['reused'] else 'made'}: "
                f"{result['outputs'][0]} in {self._job.shot_dir}")

    def _finished(self, context):
        job = self._job
        entry = add_entry(context.scene, self._result["result"], job.shot_dir)
        outcome = self._end(context, {"INFO"}, self._done_message())
        try:
            results.show_in_image_editor(context, entry.image)
        except RuntimeError as exc:  # a window layout Blender refuses: the preview itself was made
            print(f"Rubble: could not show the preview ({exc}); it is the image '{entry.image.name}'.")
        return outcome


def blocked_reason(context) -> str | None:
    """Why Preview Frame cannot run: as the passes button, and the backend must be there."""
    view = shot_state.overview(context)
    return shot_state.blocked_reason(context, "passes") or view.backend_error


class RUBBLE_OT_preview_restore(bpy.types.Operator):
    """Put this preview's look (prompt, negative prompt, seed, strength) back into the preset's look in the panel"""

    bl_idname = "rubble.preview_restore"
    bl_label = "Restore Look"
    bl_options = {"REGISTER", "UNDO"}

    index: bpy.props.IntProperty(name="Preview", default=0, min=0)

    def execute(self, context):
        entries = context.scene.rubble_previews.entries
        if self.index >= len(entries):
            self.report({"ERROR"}, f"There is no preview {self.index} in the list ({len(entries)} previews).")
            return {"CANCELLED"}
        entry = entries[self.index]
        try:
            restore(context, entry)
        except (PreviewUnrestorable, PresetError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        shot_state.invalidate()
        self.report({"INFO"}, f"Rubble: restored the look of the preview of frame {entry.frame} (seed {entry.seed}); "
                              "Save As keeps it as a preset.")
        return {"FINISHED"}


class RUBBLE_OT_preview_show(bpy.types.Operator):
    """Show this preview's still in an Image Editor"""

    bl_idname = "rubble.preview_show"
    bl_label = "Show Preview"

    index: bpy.props.IntProperty(name="Preview", default=0, min=0)

    def execute(self, context):
        entries = context.scene.rubble_previews.entries
        if self.index >= len(entries) or entries[self.index].image is None:
            self.report({"ERROR"}, "That preview has no image any more: preview the frame again.")
            return {"CANCELLED"}
        shown = results.show_in_image_editor(context, entries[self.index].image)
        self.report({"INFO"}, f"Preview: {entries[self.index].path}" + ("" if shown else " (loaded as an image)"))
        return {"FINISHED"}


# --- the panel ------------------------------------------------------------------------

class RUBBLE_UL_previews(bpy.types.UIList):
    """Thumbnail, frame, seed and prompt of each preview, with one-click restore."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_property, index=0, flt_flag=0):
        preview = item.image.preview if item.image is not None else None
        row = layout.row(align=True)
        row.label(text=f"{item.frame}  seed {item.seed}  {item.prompt}",
                  icon_value=preview.icon_id if preview is not None else 0)
        row.operator("rubble.preview_show", text="", icon="IMAGE_DATA").index = index
        row.operator("rubble.preview_restore", text="", icon="LOOP_BACK").index = index


def draw(layout, context) -> None:
    reason = blocked_reason(context)
    row = layout.row()
    row.enabled = reason is None
    row.operator("rubble.preview_frame", text=f"Preview Frame {context.scene.frame_current}", icon="IMAGE_RGB")
    if reason:
        layout.label(text=reason.splitlines()[0], icon="INFO")
    history = context.scene.rubble_previews
    if len(history.entries):
        layout.template_list("RUBBLE_UL_previews", "", history, "entries", history, "active_index", rows=3)


def _panel(space: str, parent: str) -> type:
    return type(f"RUBBLE_PT_previews_{space.lower()}", (bpy.types.Panel,), {
        "bl_label": "Look Previews", "bl_space_type": space, "bl_region_type": "UI", "bl_category": "Rubble",
        "bl_parent_id": parent, "draw": lambda self, context: draw(self.layout, context)})


PANELS = (_panel("VIEW_3D", "RUBBLE_PT_shot"), _panel("SEQUENCE_EDITOR", "RUBBLE_PT_shot_sequencer"))

_classes = (RubblePreview, RubblePreviewHistory, RUBBLE_OT_preview_frame, RUBBLE_OT_preview_restore,
            RUBBLE_OT_preview_show, RUBBLE_UL_previews, *PANELS)


def register():
    for cls in _classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.rubble_previews = bpy.props.PointerProperty(type=RubblePreviewHistory)


def unregister():
    del bpy.types.Scene.rubble_previews
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
