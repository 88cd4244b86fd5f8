"""The sidebar panel, in the 3D view and in the sequencer: only draws.

`draw_shot` takes the layout as an argument so the same code draws both panels (and a
test can hand it a layout of its own: Blender makes no UILayout without a window)."""
import bpy

from ..core import stage_status
from . import shot_state

STATE_ICONS = {stage_status.UP_TO_DATE: "CHECKMARK", stage_status.STALE: "ERROR", stage_status.MISSING: "X"}


def _button(layout, idname: str, reason: str | None, **kwargs) -> None:
    """An operator button, greyed out with the reason under it when it cannot run."""
    row = layout.row()
    row.enabled = reason is None
    row.operator(idname, **kwargs)
    if reason:  # the first line; the button's tooltip (its poll message) has all of it
        layout.label(text=reason.splitlines()[0], icon="INFO")


def draw_shot(layout, context) -> None:
    settings = context.scene.rubble
    view = shot_state.overview(context)
    layout.prop(settings, "preset_path")
    layout.prop(settings, "shot_dir")
    layout.prop(settings, "weights")
    _button(layout, "rubble.generate_final", shot_state.blocked_reason(context, "final"), icon="RENDER_ANIMATION")
    row = layout.row(align=True)  # the quick looks before a final: a draft of the shot, and its cost
    for stage, icon in (("draft", "SEQ_PREVIEW"), ("estimate", "TIME")):
        column = row.column(align=True)
        column.enabled = shot_state.blocked_reason(context, stage) is None
        column.operator(f"rubble.{stage}", icon=icon)
    if view.estimate:
        layout.label(text=view.estimate, icon="TIME")

    box = layout.box()
    box.label(text="Stages")
    for stage in stage_status.PANEL_STAGES:
        row = box.row(align=True)
        state = view.states[stage] if view.states else None
        reason = shot_state.blocked_reason(context, stage)
        split = row.split(factor=0.35)
        column = split.column()
        column.enabled = reason is None
        column.operator(f"rubble.stage_{stage}", text=stage.title())
        split.label(text=state.text if state else "unknown", icon=STATE_ICONS[state.state] if state else "QUESTION")
        if reason and reason != view.setup_error:  # the settings' problem is said once, below
            box.label(text=reason.splitlines()[0], icon="INFO")
    if view.setup_error:
        layout.label(text=view.setup_error.splitlines()[0], icon="ERROR")

    row = layout.row(align=True)
    row.operator("rubble.show_result", icon="SEQUENCE")
    row.operator("rubble.open_contact_sheet", icon="IMAGE_DATA")
    if settings.status:
        layout.label(text=settings.status)


class RUBBLE_PT_shot(bpy.types.Panel):
    bl_label = "Rubble"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Rubble"

    def draw(self, context):
        draw_shot(self.layout, context)


class RUBBLE_PT_shot_sequencer(bpy.types.Panel):
    bl_label = "Rubble"
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Rubble"

    def draw(self, context):
        draw_shot(self.layout, context)
