"""Rubble, the Blender side. Registers the preferences, the panel, the Generate Final
operator and the `rubble` command-line command (`blender -b -c rubble <stage> SHOT`)."""
from . import ui

_cli_handle = None


def _cli(argv: list[str]) -> int:
    """What `blender -c rubble ARGS` calls with ARGS; its int is Blender's exit code."""
    from .cli import main  # late: pipeline imports the scene modules, which the UI alone does not need
    return main(argv)


def register():
    global _cli_handle
    ui.register()
    import bpy
    _cli_handle = bpy.utils.register_cli_command("rubble", _cli)  # Blender 4.2+, the manifest's minimum


def unregister():
    global _cli_handle
    import bpy
    if _cli_handle is not None:
        bpy.utils.unregister_cli_command(_cli_handle)
        _cli_handle = None
    ui.unregister()
