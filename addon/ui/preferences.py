"""Add-on preferences (machine-wide) and per-scene settings (travel with the .blend)."""
from pathlib import Path

import bpy

from ..core.preset import DEFAULT_PRESET

# The extension's package name (bl_ext.<repo>.rubble): preferences are keyed by it.
ADDON_PACKAGE = __package__.rpartition(".addon")[0] or __package__


class RubblePreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    backend_python: bpy.props.StringProperty(
        name="Backend Python", subtype="FILE_PATH",
        description="Interpreter of the backend's own environment (torch, diffusers); "
                    "empty: $RUBBLE_BACKEND_PYTHON, then the default environment (the extension's "
                    "user folder 'backend', or a checkout's .venv-inference)")

    def draw(self, context):
        self.layout.prop(self, "backend_python")


class RubbleSceneSettings(bpy.types.PropertyGroup):
    preset_path: bpy.props.StringProperty(name="Preset", subtype="FILE_PATH", default=str(DEFAULT_PRESET))
    shot_dir: bpy.props.StringProperty(name="Shot Folder", subtype="DIR_PATH", default="//rubble_shot")
    weights: bpy.props.EnumProperty(
        name="Weights", default="PRESET",
        items=[("PRESET", "From Preset", "Use the preset's model.weights"),
               ("auto", "Auto", "Real weights when on this machine, else the tiny smoke-test model"),
               ("pretrained", "Pretrained", "Real weights only; fail with instructions when missing"),
               ("tiny", "Tiny (smoke test)", "Random weights: checks the pipeline, not a look")])
    status: bpy.props.StringProperty(name="Status", default="")


def backend_python_preference(context) -> str:
    addon = context.preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences.backend_python if addon else ""


def default_backend_env() -> Path | None:
    """Installed as an extension: the backend environment lives in the extension's user
    folder, which survives reinstalling and updating (they replace the extension's own
    folder, and a system repository is read-only). From a checkout: None, so the
    checkout's .venv-inference (the Makefile's) stays the default."""
    if not ADDON_PACKAGE.startswith("bl_ext."):
        return None
    return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path="backend", create=True))
