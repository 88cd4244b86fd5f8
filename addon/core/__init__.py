"""Logic that needs no Blender: presets, shot manifest, stamps, the backend client.

Nothing here may import bpy, so plain pytest tests it and the CLI can use it anywhere.
"""
