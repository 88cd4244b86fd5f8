"""Issue 20's acceptance run, end to end through the installed extension: the built zip in a
temporary user repository, enabled; the backend set up with "Use Existing Python"; Generate
Final on a small preset, cancelled during the passes and during the generation, resumed:
the final frames equal those of an uninterrupted run.

It runs two whole pipelines on the tiny model: about 25 s on two cores, in every add-on suite
(both Blender versions).

What is real: the zip built by Blender's own tool, its install and enable, the Doctor,
the operator's own run functions (ticked as its modal timer ticks them), the backend
with the tiny random-weight model. What is not: the bpy wheel has no Blender binary, so
the passes render in-process (the background-process path is tests/addon/test_background_passes.py)."""
import subprocess
import sys

from conftest import SMALL_SHOT, write_preset
from test_extension import built_zip  # noqa: F401


SCRIPT = r"""
import sys, types, bpy
real, preset, shots, zip_path = sys.argv[-4:]
module = "bl_ext.user_default.rubble"
assert bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                enable_on_install=True) == {"FINISHED"}
assert bpy.ops.rubble.use_existing_python(filepath=real) == {"FINISHED"}
operators = sys.modules[module + ".addon.ui.operators"]
pipeline = sys.modules[module + ".addon.pipeline"]
settings = bpy.context.scene.rubble
settings.preset_path, settings.weights = preset, "tiny"

# 1. Uninterrupted.
settings.shot_dir = shots + "/whole"
assert bpy.ops.rubble.generate_final() == {"FINISHED"}

# 2. Interrupted twice, as the modal operator runs: one step per timer tick, Esc sets the flag.
class Run:
    reports = []
    _timer = _job = _steps = None
    def report(self, level, message):
        self.reports.append(message)
for name in ("stages", "_begin", "_end", "_done_message", "_finished"):
    setattr(Run, name, getattr(bpy.types.RUBBLE_OT_generate_final, name))

settings.shot_dir = shots + "/resumed"
for stage in ("passes", "generate:generate"):
    run = Run()
    assert run._begin(bpy.context)
    try:
        for progress in run._steps:
            if progress.stage == stage and progress.done >= 1:
                run._job.cancel_requested = True
        raise AssertionError(f"never cancelled during {stage}")
    except pipeline.Cancelled as exc:
        run._end(bpy.context, {"WARNING"}, str(exc))
        print("CANCELLED-DURING", stage)
assert bpy.ops.rubble.generate_final() == {"FINISHED"}
print("ACCEPTANCE-DONE")
"""


def test_install_set_up_generate_cancel_twice_resume_equals_uninterrupted(built_zip, tmp_path,  # noqa: F811
                                                                          backend_python, tiny_model_dir):
    preset = write_preset(tmp_path / "small.toml", **SMALL_SHOT)
    env = {"BLENDER_USER_RESOURCES": str(tmp_path / "user"), "PATH": "/usr/bin:/bin",
           "RUBBLE_TINY_MODEL": str(tiny_model_dir)}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(backend_python), str(preset), str(tmp_path),
                             str(built_zip)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1200)
    assert "ACCEPTANCE-DONE" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
    assert "CANCELLED-DURING passes" in result.stdout and "CANCELLED-DURING generate:generate" in result.stdout
    for f in range(1, 5):
        whole = (tmp_path / "whole" / "frames" / f"{f:04d}.png").read_bytes()
        assert (tmp_path / "resumed" / "frames" / f"{f:04d}.png").read_bytes() == whole, f"frame {f} differs"
    assert (tmp_path / "resumed" / "final.mp4").is_file()
