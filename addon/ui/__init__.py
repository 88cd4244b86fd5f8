"""The artist's side: preferences, the sidebar panels, Generate Final and the per-stage buttons."""
import bpy

from ..core import backend
from . import operators, panel, preferences, presets, previews, results

_classes = (preferences.RubblePreferences, preferences.RubbleSceneSettings, *preferences.SETUP_OPERATORS,
            operators.RUBBLE_OT_generate_final, *operators.STAGE_OPERATORS,
            operators.RUBBLE_OT_draft, operators.RUBBLE_OT_estimate,
            results.RUBBLE_OT_show_result, results.RUBBLE_OT_open_contact_sheet,
            panel.RUBBLE_PT_shot, panel.RUBBLE_PT_shot_sequencer)


def register():
    for cls in _classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.rubble = bpy.props.PointerProperty(type=preferences.RubbleSceneSettings)
    presets.register()  # after the panel: its sub-panel's parent
    previews.register()  # likewise
    backend.set_default_env(preferences.default_backend_env())


def unregister():
    previews.unregister()
    presets.unregister()
    backend.set_default_env(None)
    del bpy.types.Scene.rubble
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
