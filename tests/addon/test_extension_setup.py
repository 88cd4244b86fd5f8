"""Backend setup from the Preferences of an installed extension (issue 20 item 3): the built
zip installed into a temporary user repository and enabled; "Use Existing Python" refuses
an environment without torch and accepts the real backend (both checked by the real
Doctor), Copy Report runs on the Doctor's report (background Blender has no clipboard to
read back), and Install Backend refuses to go
online while Blender's online access is off (it is, in background mode)."""
import subprocess
import sys

from conftest import REPO
from test_extension import built_zip  # noqa: F401  (the module-scoped fixture: the zip, built once)

SETUP = r"""
import sys, bpy
bare, real, zip_path = sys.argv[-3:]
module = "bl_ext.user_default.rubble"
assert bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                enable_on_install=True) == {"FINISHED"}
prefs = bpy.context.preferences.addons[module].preferences
setup = sys.modules[module + ".addon.ui.preferences"].setup

try:
    bpy.ops.rubble.use_existing_python(filepath=bare)
except RuntimeError as exc:
    print("BARE-REFUSED:", exc)
print("PREF-AFTER-BARE:", repr(prefs.backend_python))
print("BARE-REPORT:", setup.report.replace("\n", " | "))

assert bpy.ops.rubble.use_existing_python(filepath=real) == {"FINISHED"}
print("PREF-AFTER-REAL:", prefs.backend_python)

prefs.backend_python = bare
print("DOCTOR:", bpy.ops.rubble.doctor())  # a warning, not an error: the Doctor itself ran
# Background Blender has no system clipboard to read back: what Copy Report copies is the report.
assert bpy.ops.rubble.copy_report() == {"FINISHED"}
print("COPIED:", setup.report.replace("\n", " | "))

print("ONLINE:", bpy.app.online_access)
try:
    bpy.ops.rubble.install_backend()
except RuntimeError as exc:
    print("INSTALL-REFUSED:", exc)
print("SETUP-OK")
"""


def test_use_existing_python_doctor_and_copy_report_in_the_installed_extension(built_zip, tmp_path,  # noqa: F811
                                                                                backend_python):
    bare = tmp_path / "bare env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    bare_python = bare / "bin" / "python"
    env = {"BLENDER_USER_RESOURCES": str(tmp_path / "user resources"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", SETUP, str(bare_python), str(backend_python), str(built_zip)],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    out = result.stdout
    assert "SETUP-OK" in out, out[-3000:] + result.stderr[-3000:]
    lines = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in out.splitlines() if ":" in line}
    assert "cannot run the backend" in lines["BARE-REFUSED"]
    assert lines["PREF-AFTER-BARE"] == "''", "a broken environment was accepted"
    assert "torch        MISSING" in lines["BARE-REPORT"]
    assert f"are not installed in {bare_python}" in lines["BARE-REPORT"]
    assert lines["PREF-AFTER-REAL"] == str(backend_python)
    assert lines["DOCTOR"] == "{'CANCELLED'}"
    assert f"interpreter  {bare_python}" in lines["COPIED"] and "torch        MISSING" in lines["COPIED"]
    assert lines["ONLINE"] == "False" and "online access is off" in lines["INSTALL-REFUSED"]
