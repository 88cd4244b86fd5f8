"""The repository is a valid extension: Blender's own tool validates and builds it, and
the zip installs into a temporary user repository and enables, disables, enables."""
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import bpy
import pytest

from conftest import REPO

# Blender's own extension tool ships with Blender (and inside the bpy wheel).
BLENDER_EXT = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"

INSTALL_AND_TOGGLE = r"""
import sys, bpy
zip_path = sys.argv[-1]
module = "bl_ext.user_default.rubble"
assert bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                enable_on_install=True) == {"FINISHED"}
def state():
    return (module in bpy.context.preferences.addons, hasattr(bpy.types.Scene, "rubble"),
            hasattr(bpy.types, "RUBBLE_OT_generate_final"))
assert state() == (True, True, True), state()
bpy.ops.preferences.addon_disable(module=module)
assert state() == (False, False, False), state()
bpy.ops.preferences.addon_enable(module=module)
assert state() == (True, True, True), state()
print("TOGGLED-OK")
# No backend environment in the extension's user folder: Generate Final refuses at once,
# naming the command that creates one there from the requirements shipped in the zip.
print("USER-BACKEND:", bpy.utils.extension_path_user(module, path="backend"))
bpy.context.scene.rubble.shot_dir = sys.argv[-2]
try:
    bpy.ops.rubble.generate_final()
except RuntimeError as exc:
    print("REFUSED:", exc)
"""


def _ext(*args, cwd=REPO):
    return subprocess.run([sys.executable, str(BLENDER_EXT), *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    result = _ext("build", "--source-dir", str(REPO), "--output-dir", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    (zip_path,) = out.glob("rubble-*.zip")
    return zip_path


def test_manifest_passes_blenders_validator():
    assert BLENDER_EXT.exists(), BLENDER_EXT
    result = _ext("validate", str(REPO))
    assert result.returncode == 0, result.stdout + result.stderr


def test_zip_carries_the_extension_and_nothing_else(built_zip):
    names = zipfile.ZipFile(built_zip).namelist()
    for needed in ("blender_manifest.toml", "__init__.py", "addon/pipeline.py", "inference/__main__.py",
                   "presets/default.toml", "requirements/inference.txt"):
        assert needed in names, f"{needed} missing from the zip"
    for unwanted in ("tests/", "bench/", ".venv-", "build/", "__pycache__", ".git/"):
        assert not any(unwanted in n for n in names), f"{unwanted} leaked into the zip"


def test_zip_installs_and_enables_disables_enables(built_zip, tmp_path):
    # A user folder with a space, as on macOS ("Application Support") and Windows.
    user = tmp_path / "user resources"
    env = {"BLENDER_USER_RESOURCES": str(user), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", INSTALL_AND_TOGGLE, str(tmp_path / "shot"), str(built_zip)],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert "TOGGLED-OK" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
    installed = user / "extensions" / "user_default" / "rubble"
    assert (installed / "blender_manifest.toml").exists()
    # The backend's default home is the extension's user folder, which outlives a reinstall.
    user_backend = user / "extensions" / ".user" / "user_default" / "rubble" / "backend"
    assert f"USER-BACKEND: {user_backend}" in result.stdout
    assert user_backend.is_dir()
    refusal = result.stdout[result.stdout.index("REFUSED:"):]
    assert "backend environment was not found" in refusal
    assert f"-m venv {shlex.quote(str(user_backend))} && {shlex.quote(str(user_backend / 'bin' / 'python'))}" in refusal
    requirements = installed / "requirements"
    assert (f"-r {shlex.quote(str(requirements / 'inference.txt'))} "
            f"-c {shlex.quote(str(requirements / 'inference.lock.txt'))}") in refusal
    assert (requirements / "inference.lock.txt").is_file(), "the zip lacks the lock file the command names"
