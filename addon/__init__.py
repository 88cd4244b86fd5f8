"""Rubble, the Blender side. Registers the preferences, the panel, the Generate Final
operator and the `rubble` command-line command (`blender -c rubble ...`)."""
from . import ui

_cli_handle = None


def _cli(argv):
    from .cli import main
    return main(argv)


def register():
    global _cli_handle
    ui.register()
    import bpy
    if hasattr(bpy.utils, "register_cli_command"):
        _cli_handle = bpy.utils.register_cli_command("rubble", _cli)


def unregister():
    global _cli_handle
    import bpy
    if _cli_handle is not None:
        bpy.utils.unregister_cli_command(_cli_handle)
        _cli_handle = None
    ui.unregister()
