"""Passes in a background Blender (issue 20 item 2): the UI polls a `blender -b shot.blend
--python-expr ...` process, so Cancel is instant and keeps the finished frames.

What is real: bpy (the shot is built, baked and saved by the real pipeline; every frame is
rendered by real Cycles), the command line the pipeline builds, the process it starts,
polls and kills, the per-frame stamps it polls. What stands in: the Blender *binary*. The
bpy wheel has none (`bpy.app.binary_path` is empty), so `fake_blender` below is a
script run by the bpy environment's Python that honours the same command-line contract
(`-b FILE --python-expr EXPR -- ARGS`: open FILE, run EXPR with that sys.argv)."""
import os
import stat
import sys
import time

import bpy
import numpy as np
import OpenEXR
import pytest

from addon import pipeline
from addon.core.preset import load_preset
from conftest import SMALL_SHOT, write_preset

FAKE_BLENDER = f'''#!{sys.executable}
"""blender -b FILE --python-expr EXPR -- ARGS, with the bpy module."""
import sys
assert sys.argv[1] == "-b" and sys.argv[3] == "--python-expr", sys.argv
import bpy
bpy.ops.wm.open_mainfile(filepath=sys.argv[2])
exec(compile(sys.argv[4], "<python-expr>", "exec"), {{"__name__": "__main__"}})
'''


@pytest.fixture(scope="module")
def baked(tmp_path_factory):
    """A small shot built, baked and saved in this process, as Generate Final does in a session;
    its frames are rendered at a size where a frame takes a noticeable time."""
    root = tmp_path_factory.mktemp("background")
    shot = {**SMALL_SHOT, "shot": {**SMALL_SHOT["shot"], "resolution": [128, 96]}, "render": {"samples": 8},
            "model": {**SMALL_SHOT["model"], "width": 128, "height": 96}}
    preset = load_preset(write_preset(root / "small.toml", **shot))
    pipeline.reset_session()
    job = pipeline.ShotJob(shot_dir=root / "shot", preset=preset, stages=("bake",))
    list(pipeline.run(job))
    fake = root / "fake_blender"
    fake.write_text(FAKE_BLENDER)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return root / "shot", preset, str(fake)


def _depths(shot_dir):
    out = {}
    for f in range(1, 5):
        for part in OpenEXR.File(str(shot_dir / "passes" / f"{f:04d}.exr")).parts:
            for name, channel in part.channels.items():
                if name.endswith("Depth.Z"):
                    out[f] = np.array(channel.pixels)
    return out


def _forget_passes(shot_dir):
    for path in (shot_dir / "passes").glob("*.exr"):
        path.unlink()
    for path in (shot_dir / ".rubble" / "stamps" / "passes").glob("*"):
        path.unlink()


def test_the_bpy_module_has_no_binary_so_passes_render_in_process():
    assert pipeline.background_blender() == ""  # bpy.app.binary_path is empty in the wheel


def test_background_passes_cancel_at_once_keep_frames_and_resume_to_the_in_process_result(baked):
    shot_dir, preset, fake = baked
    # The fallback (no binary): real Cycles in this process.
    list(pipeline.run(pipeline.ShotJob(shot_dir=shot_dir, preset=preset, stages=("passes",))))
    in_process = _depths(shot_dir)
    _forget_passes(shot_dir)

    job = pipeline.ShotJob(shot_dir=shot_dir, preset=preset, stages=("passes",), blender=fake)
    steps = pipeline.run(job)
    for progress in steps:
        if progress.stage == "passes" and progress.done >= 1:
            break
    job.cancel_requested = True
    asked = time.perf_counter()
    with pytest.raises(pipeline.Cancelled):
        next(steps)
    assert time.perf_counter() - asked < 1.0, "Cancel waited for the render"
    assert job.passes_process.returncode is not None, "the background Blender is still running"
    kept = sorted(p.name for p in (shot_dir / "passes").glob("*.exr"))
    assert 1 <= len(kept) < 4, kept
    assert not list((shot_dir / "passes").glob(".*")), "a killed frame's temporary file was left"
    log = (shot_dir / "logs" / "passes-background.log").read_text()
    assert f"-b {shot_dir / 'shot.blend'} --python-expr" in log

    # A frame counts as finished once its stamp is written, just after its EXR: the kill can fall
    # between the two, and then that frame is rendered again.
    finished = len(list((shot_dir / ".rubble" / "stamps" / "passes").iterdir()))
    assert finished in (len(kept), len(kept) - 1)
    resumed = pipeline.ShotJob(shot_dir=shot_dir, preset=preset, stages=("passes",), blender=fake)
    messages = [p.message for p in pipeline.run(resumed)]
    assert f"rendered {4 - finished} frames in a background Blender" in messages, messages
    background = _depths(shot_dir)
    for f in range(1, 5):  # the same shot.blend and bake: the same pixels, to the bit
        np.testing.assert_array_equal(background[f], in_process[f], err_msg=f"frame {f}")


def test_a_failing_background_blender_names_its_log(baked, tmp_path):
    shot_dir, preset, _ = baked
    _forget_passes(shot_dir)
    broken = tmp_path / "broken_blender"
    broken.write_text("#!/bin/sh\necho 'Error: cannot open display' >&2\nexit 3\n")
    broken.chmod(0o755)
    job = pipeline.ShotJob(shot_dir=shot_dir, preset=preset, stages=("passes",), blender=str(broken))
    with pytest.raises(pipeline.StageError, match=r"exited with code 3 \(4 of 4 frames missing\)") as error:
        list(pipeline.run(job))
    assert "cannot open display" in str(error.value)
