"""Headless Rubble as a farm runs it: `blender -b -c rubble <stage> SHOT [--frames A-B]` through
the command the installed extension registers, and `blender -b --python run_rubble.py -- ...`
when it is only on disk; plain progress lines, non-zero exit codes on failure.

The bpy wheel cannot run `blender -c`: a Python-module build never parses Blender's command
line (source/creator/creator.cc skips BLI_args_parse under WITH_PYTHON_MODULE), and Blender
keeps the registered callable to itself (bpy_cli_command.cc). So the extension is installed
and enabled for real, `bpy.utils.register_cli_command` is wrapped to note what Rubble hands
it (and still registers it), and the test calls that callable as bpy_cli_command_exec does:
a list of strings in, SystemExit's code or the returned int out, anything else an error.
"""
import re
import subprocess
import sys
from pathlib import Path

import bpy
import pytest

import preset_corpus as corpus
from conftest import REPO, SMALL_SHOT, write_preset

BLENDER_EXT = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"

CALL_REGISTERED_COMMAND = r"""
import sys, traceback, bpy
zip_path, shot, preset, bad, backend = sys.argv[-5:]
noted = {}
real_register = bpy.utils.register_cli_command
def noting_register(command_id, execute):
    handle = real_register(command_id, execute)
    noted[command_id] = (execute, handle)
    return handle
bpy.utils.register_cli_command = noting_register
assert bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                enable_on_install=True) == {"FINISHED"}
execute, handle = noted["rubble"]
print("REGISTERED", execute.__module__, type(handle).__name__, flush=True)
# (While it is installed: Save As puts a user preset in the extension's user folder.)
assert bpy.ops.rubble.preset_load(key="shipped:default") == {"FINISHED"}
assert bpy.ops.rubble.preset_save_as(name="farm look") == {"FINISHED"}
print("SAVED", bpy.context.scene.rubble.preset_path, flush=True)

def blender_runs(*argv):
    # bpy_cli_command_exec (source/blender/python/intern/bpy_cli_command.cc)
    try:
        result = execute(list(argv))
    except SystemExit as exc:
        result = exc.code
    except BaseException:
        traceback.print_exc()
        return 1
    return result if isinstance(result, int) and not isinstance(result, bool) else f"not an int: {result!r}"

for label, argv in (("help", ["--help"]), ("passes-help", ["passes", "--help"]),
                    ("bake-frames", ["bake", shot, "--frames", "1-2"]), ("check-bad", ["check-preset", bad]),
                    ("bake", ["bake", shot, "--preset", preset]), ("passes", ["passes", shot, "--frames", "2-3"]),
                    ("generate", ["generate", shot, "--backend-python", backend])):
    sys.stderr.write(f"=== {label}\n")
    sys.stderr.flush()
    print("EXIT", label, blender_runs(*argv), flush=True)
bpy.ops.preferences.addon_disable(module="bl_ext.user_default.rubble")
try:
    bpy.utils.unregister_cli_command(handle)
except ValueError as exc:
    print("UNREGISTERED", exc)
"""


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, str(BLENDER_EXT), "build", "--source-dir", str(REPO), "--output-dir",
                             str(out)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    (zip_path,) = out.glob("rubble-*.zip")
    return zip_path


def _sections(stderr: str) -> dict[str, str]:
    parts = re.split(r"^=== (\S+)\n", stderr, flags=re.M)
    return {name: text for name, text in zip(parts[1::2], parts[2::2])}


def test_every_stage_runs_through_the_registered_cli_command(built_zip, tmp_path, backend_python):
    shot = tmp_path / "shot dir"
    preset = write_preset(tmp_path / "small.toml", **SMALL_SHOT)
    bad = tmp_path / "bad.toml"
    bad.write_text(corpus.DEFAULT_TEXT.replace("fps = 24", "fps = nan"))
    result = subprocess.run([sys.executable, "-c", CALL_REGISTERED_COMMAND, str(built_zip), str(shot), str(preset),
                             str(bad), str(backend_python)], capture_output=True, text=True, cwd=tmp_path, timeout=600,
                            env={"BLENDER_USER_RESOURCES": str(tmp_path / "user"), "PATH": "/usr/bin:/bin"})
    out, err = result.stdout, result.stderr
    assert "REGISTERED bl_ext.user_default.rubble.addon PyCapsule" in out, out[-3000:] + err[-3000:]
    user_presets = tmp_path / "user" / "extensions" / ".user" / "user_default" / "rubble" / "presets"
    assert f"SAVED {user_presets / 'farm look.toml'}" in out and (user_presets / "farm look.toml").is_file()
    exits = dict(re.findall(r"^EXIT (\S+) (.+)$", out, flags=re.M))
    assert exits == {"help": "0", "passes-help": "0", "bake-frames": "2", "check-bad": "1", "bake": "0",
                     "passes": "0", "generate": "1"}, out[-3000:] + err[-3000:]
    assert "usage: rubble [-h]" in out and "usage: rubble passes" in out and "--frames FRAMES" in out
    log = _sections(err)
    assert "unrecognized arguments: --frames 1-2" in log["bake-frames"]
    assert "- shot.fps: expected int (a whole number), got float nan" in log["check-bad"]
    # Farm log: plain lines with the seconds since the start, what ran, what it made.
    lines = [line for text in log.values() for line in text.splitlines() if line.startswith("[rubble")]
    assert lines and all(re.match(r"\[rubble +\d+\.\ds\] \S", line) for line in lines), lines
    assert "\r" not in err
    assert any(re.search(rf"\] bake {re.escape(str(shot))} \(Rubble \S+, Blender \S+", line) for line in lines)
    assert any(re.search(r"\] bake 2/2: baked frames 1-4", line) for line in lines), lines
    assert any(re.search(r"\] passes 2/2: rendered 2 frames", line) for line in lines), lines
    assert sorted(p.name for p in (shot / "passes").glob("*.exr")) == ["0002.exr", "0003.exr"]
    assert any("error: Passes are missing or stale for 2 frames (first: 1)" in line for line in lines), lines
    assert "UNREGISTERED The command has already been removed" in out  # disabling unregistered it


def test_run_rubble_py_hands_its_exit_code_to_blender(tmp_path):
    """`blender -b --python run_rubble.py -- ...`: Blender runs the file with sys.argv holding
    its own arguments, then `--`, then ours; only sys.exit sets Blender's exit code."""
    bad = tmp_path / "bad.toml"
    bad.write_text(corpus.DEFAULT_TEXT.replace('base = "stable-diffusion', 'base = "/etc/../stable-diffusion'))
    as_blender = ("import runpy, sys; sys.argv = ['blender', '-b', '--python', sys.argv[1], '--'] + sys.argv[2:]; "
                  "runpy.run_path(sys.argv[3], run_name='__main__')")
    errors = {}
    for argv, code in ((["check-preset", str(bad)], 1), (["passes", str(tmp_path / "shot"), "--frames", "3-1"], 2)):
        result = subprocess.run([sys.executable, "-c", as_blender, str(REPO / "run_rubble.py"), *argv],
                                capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert result.returncode == code, (argv, result.stderr[-2000:])
        errors[argv[0] + str(code)] = result.stderr
    assert "model.base: '/etc/../stable-diffusion-v1-5/stable-diffusion-v1-5' is a path with '..'" in errors["check-preset1"]
    assert "'3-1': the last frame is before the first" in errors["passes2"]
    assert not (tmp_path / "shot").exists()
