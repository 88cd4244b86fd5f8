"""Rubble inference backend: shot directory in, generated frames out (see docs/contract.md)."""
import tomllib
from pathlib import Path

# One version for the whole extension, the manifest's (the add-on reads the same file).
__version__ = tomllib.loads((Path(__file__).resolve().parents[1] / "blender_manifest.toml").read_text())["version"]
