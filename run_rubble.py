"""`blender -b --python run_rubble.py -- <stage> SHOT [options]`: Rubble headless without installing the extension."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from addon.cli import blender_main  # noqa: E402

blender_main()
