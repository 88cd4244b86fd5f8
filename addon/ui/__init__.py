"""The artist's side: preferences, the sidebar panel and the Generate Final operator."""
import bpy

from ..core import backend
from . import operators, panel, preferences, presets

_classes = (preferences.RubblePreferences, preferences.RubbleSceneSettings,
            operators.RUBBLE_OT_generate_final, panel.RUBBLE_PT_shot)


def register():
    for cls in _classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.rubble = bpy.props.PointerProperty(type=preferences.RubbleSceneSettings)
    presets.register()  # after the panel: its sub-panel's parent
    backend.set_default_env(preferences.default_backend_env())


def unregister():
    presets.unregister()
    backend.set_default_env(None)
    del bpy.types.Scene.rubble
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
