"""A small shot as a real farm job: `rubble farm export`, then the real `openjd run` (the farm
tools' environment) in chunks and windows, against one headless run of the same shot. Then a
task killed and the job run again, and the finished shot moved, reopened and listed by Blender
Asset Tracer.

About 2 minutes on 2 cores, so opt-in in a plain pytest run; `make test` runs it once, on
Blender 5.0 (`make test-farm`): RUBBLE_FARM_TESTS=1 .venv-blender/bin/python -m pytest
tests/addon/test_farm_job.py. The bpy wheel's Python stands in for Blender (the template's
Blender parameter), running the same `-b --python-expr` command line."""
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np
import OpenEXR
import pytest

from conftest import REPO, SMALL_SHOT, run_cli, write_preset

pytestmark = pytest.mark.skipif(os.environ.get("RUBBLE_FARM_TESTS") != "1",
                                reason="an openjd job end to end takes minutes: set RUBBLE_FARM_TESTS=1 "
                                       "(make test-farm)")

FARM = REPO / ".venv-farm" / "bin"
# 4 frames in passes chunks of 2, and 3 windows of 2 frames sharing 1.
FARM_SHOT = {**SMALL_SHOT, "model": {**SMALL_SHOT["model"], "window": 2, "overlap": 1, "weights": "tiny"},
             "long_shot": {"mode": "windows"}}  # several generate tasks
STAND_IN = f"""#!{sys.executable}
# Blender for the farm tests: the bpy wheel runs what `blender -b --python-expr EXPR -- ...` runs.
import sys
exec(compile(sys.argv[sys.argv.index("--python-expr") + 1], "<python-expr>", "exec"), {{"__name__": "__main__"}})
"""


@dataclass
class FarmRun:
    shot: Path
    reference: Path
    job: Path
    env: dict
    log: str


def openjd_run(job: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    """The whole job: composite and every step it depends on, in one local session."""
    run = subprocess.run([str(FARM / "openjd"), "run", str(job), "--step", "composite", "--run-dependencies",
                          "-p", f"RubbleRoot={REPO}", *args],
                         capture_output=True, text=True, timeout=900, env=env)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    return run


def mtimes(shot: Path) -> dict[str, int]:
    return {str(p.relative_to(shot)): p.stat().st_mtime_ns for p in shot.rglob("*") if p.is_file()}


def pixels(path: Path) -> dict:
    if path.suffix == ".exr":
        return {name: c.pixels for part in OpenEXR.File(str(path)).parts for name, c in part.channels.items()}
    image = bpy.data.images.load(str(path))
    try:
        return {"rgba": np.array(image.pixels[:])}
    finally:
        bpy.data.images.remove(image)


@pytest.fixture(scope="module")
def farm_run(tmp_path_factory, backend_python, tiny_model_dir) -> FarmRun:
    root = tmp_path_factory.mktemp("farm")
    preset = write_preset(root / "small.toml", **FARM_SHOT)
    env = {**os.environ, "RUBBLE_TINY_MODEL": str(tiny_model_dir), "PYTHONUNBUFFERED": "1"}

    reference = root / "single"
    single = run_cli("shot", str(reference), "--preset", str(preset), "--backend-python", str(backend_python),
                     "--tiny-model", str(tiny_model_dir))
    assert single.returncode == 0, single.stderr[-3000:]

    blender = root / "blender"
    blender.write_text(STAND_IN)
    blender.chmod(0o755)
    shot = root / "farm" / "sh010"
    job = shot / "job.yaml"
    export = run_cli("farm", "export", str(shot), "--preset", str(preset), "--out", str(job), "--chunk-size", "2",
                     "--blender", str(blender), "--backend-python", str(backend_python))
    assert export.returncode == 0, export.stderr[-3000:]
    check = subprocess.run([str(FARM / "openjd"), "check", str(job)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "-p RubbleRoot=" in export.stderr, "Rubble lies outside the template's folder: the submitter names it"
    run = openjd_run(job, env)
    return FarmRun(shot, reference, job, env, run.stdout + run.stderr)


def test_the_job_in_chunks_and_windows_equals_one_headless_run(farm_run):
    log = farm_run.log
    assert "Frames(CHUNK[INT]) = 1-2" in log and "Frames(CHUNK[INT]) = 3-4" in log, "passes ran in two chunks"
    assert all(f"Window(INT) = {w}" in log for w in range(3)), "generate ran one task per window"
    for name in ("shot.blend", "shot.json", "provenance.json", "contact_sheet.png", "final.mp4"):
        assert (farm_run.shot / name).is_file(), name
    for frame in range(1, 5):
        for path in (f"passes/{frame:04d}.exr", f"frames/{frame:04d}.png"):
            farm, single = pixels(farm_run.shot / path), pixels(farm_run.reference / path)
            assert farm.keys() == single.keys()
            for name in farm:
                assert np.array_equal(farm[name], single[name]), f"{path} {name} differs from the single run"
    assert not list(farm_run.shot.glob("*.blend1")) and not list(farm_run.reference.glob("*.blend1")), \
        "Blender's numbered backups were left in a shot directory"


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def test_a_task_killed_mid_way_is_redone_alone(farm_run):
    shot = farm_run.shot
    window = shot / "windows" / "001"
    shutil.rmtree(window)  # window 1's task has work to do again
    before = mtimes(shot)
    task = subprocess.Popen([str(FARM / "openjd"), "run", str(farm_run.job), "--step", "generate", "--task-param",
                             "Window=1", "-p", f"RubbleRoot={REPO}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=farm_run.env)
    seen = []
    for line in task.stdout:  # the backend logs "[windows] …" to stderr as it starts on the window
        seen.append(line)
        if "[windows]" in line:
            for pid in reversed(_descendants(task.pid)):  # the worker dies: openjd, the backend, all at once
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            break
    task.wait(timeout=60)
    assert any("[windows]" in line for line in seen), "".join(seen)[-3000:]
    assert not (window / "record.json").exists(), "the task finished before it was killed"

    again = openjd_run(farm_run.job, farm_run.env).stdout
    assert "window 0 unchanged, skipped" in again and "window 2 unchanged, skipped" in again
    assert again.count("passes: up to date, skipped") == 2 and "composite: up to date, skipped" in again
    after = mtimes(shot)
    changed = {path for path in before if after.get(path) != before[path]}
    # Window 1's task redid its window and, finishing the set, blended the frames again (and delivered
    # again the frames whose blended pixels changed: inference/upscale.py).
    blended = ({f"{folder}/{f:04d}.{ext}" for f in range(1, 5) for folder, ext in
                (("blended", "png"), ("frames", "png"), ("upscale", "json"))} | {"contact_sheet.png", "provenance.json"})
    assert changed <= blended, f"other tasks' outputs were touched: {sorted(changed - blended)}"
    assert (window / "record.json").is_file()
    for frame in (2, 3):
        redone = pixels(window / f"{frame:04d}.png")["rgba"]
        assert np.array_equal(redone, pixels(farm_run.reference / "windows" / "001" / f"{frame:04d}.png")["rgba"])


def test_a_moved_shot_runs_reopens_and_packs_from_where_it_landed(farm_run, tmp_path):
    moved = tmp_path / "landed here" / "sh010"
    moved.parent.mkdir()
    shutil.move(farm_run.shot, moved)
    before = mtimes(moved)
    # The template travelled inside the shot: its ShotDir default "." is where it landed now.
    run = openjd_run(moved / "job.yaml", farm_run.env)
    assert "window 1 unchanged, skipped" in run.stdout and "composite: up to date, skipped" in run.stdout
    assert mtimes(moved) == before, "a finished job run again from the new place changed files"

    text = (moved / "shot.json").read_text()
    assert str(farm_run.shot) not in text and str(tmp_path) not in text
    bpy.ops.wm.open_mainfile(filepath=str(moved / "shot.blend"))
    try:
        images = []
        for scene in bpy.data.scenes:
            assert scene.render.filepath.startswith("//"), (scene.name, scene.render.filepath)
            assert "rubble_shot_dir" not in scene, "shot.blend keeps the absolute folder it was made in"
            for strip in (scene.sequence_editor.strips_all if scene.sequence_editor else []):
                images += [Path(bpy.path.abspath(strip.directory)) / e.filename for e in strip.elements]
        assert len(images) == 8 and all(p.is_file() and moved.resolve() in p.resolve().parents for p in images), images
    finally:
        bpy.ops.wm.read_homefile(use_empty=True)

    listed = subprocess.run([str(FARM / "bat"), "list", "--json", str(moved / "shot.blend")], capture_output=True,
                            text=True, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    (dependencies,) = json.loads(listed.stdout).values()
    assert len(dependencies) == 8
    outside = [p for p in dependencies if moved.resolve() not in Path(p).resolve().parents]
    assert not outside, f"bat list shows paths outside the shot directory: {outside}"

    packed = tmp_path / "packed"
    pack = subprocess.run([str(FARM / "bat"), "pack", "--project", str(moved), str(moved / "shot.blend"), str(packed)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert pack.returncode == 0, pack.stdout + pack.stderr
    assert all((packed / Path(p).resolve().relative_to(moved.resolve())).is_file() for p in dependencies), \
        "bat pack put the strip images somewhere else than beside shot.blend as in the shot"
