"""The headless CLI on an existing shot, through real subprocesses as a farm runs it: after
the bake the shot's own preset (shot.json) is the truth, and the process's reset keeps
Rubble loaded."""
import json
import subprocess
import sys
from pathlib import Path

import bpy

from conftest import REPO, SMALL_SHOT, run_cli, write_preset


def _mtimes(shot_dir):
    """shot.blend, shot.json and every stage stamp (one small file each, core/stamps.py)."""
    paths = [shot_dir / "shot.blend", shot_dir / "shot.json", *(shot_dir / ".rubble" / "stamps").rglob("*")]
    return {str(p.relative_to(shot_dir)): p.stat().st_mtime_ns for p in paths if p.is_file()}


def test_existing_shot_keeps_its_preset_unless_rebuilt(tmp_path, small_preset):
    shot = tmp_path / "shot"
    first = run_cli("shot", str(shot), "--preset", str(small_preset), "--stages", "passes", "--frames", "1-2")
    assert first.returncode == 0, first.stderr[-3000:]
    made = _mtimes(shot)

    # A chunk with no --preset renders with the shot's own and leaves the shot alone.
    chunk = run_cli("shot", str(shot), "--stages", "passes", "--frames", "3-4")
    assert chunk.returncode == 0, chunk.stderr[-3000:]
    assert "bake: up to date, skipped" in chunk.stderr
    assert "passes 2/2: rendered 2 frames" in chunk.stderr, chunk.stderr[-2000:]
    assert _mtimes(shot)["shot.blend"] == made["shot.blend"] and _mtimes(shot)["shot.json"] == made["shot.json"]

    # Another scene (here the default preset's building) is refused, and nothing is touched.
    before = _mtimes(shot)
    other = run_cli("shot", str(shot), "--preset", str(REPO / "presets" / "default.toml"), "--stages", "passes")
    assert other.returncode == 1
    assert "differs from the shot" in other.stderr and "--rebuild" in other.stderr, other.stderr[-2000:]
    assert _mtimes(shot) == before

    # Only the render section changed: an ordinary change, the passes are redone, the bake is kept.
    samples = write_preset(tmp_path / "samples.toml", **{**SMALL_SHOT, "render": {"samples": 3}})
    rerender = run_cli("shot", str(shot), "--preset", str(samples), "--stages", "passes")
    assert rerender.returncode == 0, rerender.stderr[-3000:]
    assert "bake: up to date, skipped" in rerender.stderr and "rendered 4 frames" in rerender.stderr
    assert json.loads((shot / "shot.json").read_text())["preset"]["render"]["samples"] == 3
    assert _mtimes(shot)["shot.blend"] == made["shot.blend"]

    # Asked for, a rebuild replaces the shot.
    taller = write_preset(tmp_path / "taller.toml", **{**SMALL_SHOT, "building": {**SMALL_SHOT["building"], "storeys": 3}})
    rebuilt = run_cli("shot", str(shot), "--preset", str(taller), "--stages", "passes", "--rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert "bake: up to date" not in rebuilt.stderr and "rendered 4 frames" in rebuilt.stderr
    assert json.loads((shot / "shot.json").read_text())["preset"]["building"]["storeys"] == 3
    # shot.blend was written three times: Blender's numbered backups must not pile up beside it.
    assert not list(shot.glob("*.blend1")), sorted(p.name for p in shot.iterdir())


# The extension installed and enabled as an artist or a farm has it; then what the CLI does
# before building a shot. read_factory_settings unloaded Rubble (and its `-c rubble` command)
# in the middle of its own run and set save_version back to 1.
RESET_KEEPS_RUBBLE = r"""
import sys, bpy
assert bpy.ops.extensions.package_install_files(filepath=sys.argv[-1], repo="user_default",
                                                enable_on_install=True) == {"FINISHED"}
from bl_ext.user_default.rubble.addon import pipeline
bpy.context.preferences.filepaths.save_version = 0
pipeline.reset_session()
print("STATE", "bl_ext.user_default.rubble" in bpy.context.preferences.addons,
      hasattr(bpy.types, "RUBBLE_OT_generate_final"), bpy.context.preferences.filepaths.save_version)
"""


def test_the_cli_reset_keeps_rubble_enabled(tmp_path):
    tool = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    (tmp_path / "dist").mkdir()
    built = subprocess.run([sys.executable, str(tool), "build", "--source-dir", str(REPO), "--output-dir",
                            str(tmp_path / "dist")], capture_output=True, text=True, cwd=REPO)
    assert built.returncode == 0, built.stdout + built.stderr
    (zip_path,) = (tmp_path / "dist").glob("rubble-*.zip")
    result = subprocess.run([sys.executable, "-c", RESET_KEEPS_RUBBLE, str(zip_path)], capture_output=True, text=True,
                            env={"BLENDER_USER_RESOURCES": str(tmp_path / "user"), "PATH": "/usr/bin:/bin"},
                            cwd=tmp_path, timeout=300)
    assert "STATE True True 0" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
