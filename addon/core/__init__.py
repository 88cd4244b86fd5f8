"""Logic that needs no Blender: presets, shot manifest, stamps, the backend client.

Nothing here may import bpy, so plain pytest tests it and the CLI can use it anywhere.
"""
import tomllib
from pathlib import Path

# One version for the whole extension, the manifest's (the backend reads the same file).
VERSION = tomllib.loads((Path(__file__).resolve().parents[2] / "blender_manifest.toml").read_text())["version"]
