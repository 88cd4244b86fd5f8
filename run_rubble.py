"""`blender -b --python run_rubble.py -- shot DIR [options]`: Rubble headless without installing the extension."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from addon.cli import main  # noqa: E402

argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
code = main(argv)
if code:
    sys.exit(code)
