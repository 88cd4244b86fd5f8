"""The sidebar panel: only draws."""
import bpy


class RUBBLE_PT_shot(bpy.types.Panel):
    bl_label = "Rubble"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Rubble"

    def draw(self, context):
        settings = context.scene.rubble
        layout = self.layout
        layout.prop(settings, "preset_path")
        layout.prop(settings, "shot_dir")
        layout.prop(settings, "weights")
        layout.operator("rubble.generate_final", icon="RENDER_ANIMATION")
        if settings.status:
            layout.label(text=settings.status)
