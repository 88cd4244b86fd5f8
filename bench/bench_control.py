"""Frames per second of the control stage (EXR reading, depth, normal, clay, flow, occlusion and
masks), for each EXR codec of the passes, against a baseline checkout, all measured in this run;
then whether this checkout's maps are the baseline's, pixel for pixel (issue 16: >= 100 frames/s
at 512x288 on 2 cores, i.e. <= 0.02 CPU s/frame).

    .venv-inference/bin/python bench/bench_control.py [--sizes 512x288,1280x720] [--frames 96]
                                                     [--baseline-code DIR] [--work DIR]

Real passes: the default preset's building (1,100 fragments) is built and baked once, then a
few frames of its collapse are rendered by Cycles at each size, each render saved with each of
CODECS. A shot of --frames frames cycles through those renders (hard links: reading and hashing
cost the same, the disk does not fill). Each configuration runs `python -m inference control` in
a fresh process on a fresh copy of the shot (see fresh_copy), best of --repeat; process start (Python, numpy, Pillow, OpenEXR and the
backend's modules, no frame) is measured alone and reported apart, and frames/s = frames /
(wall - start). CPU s/frame counts the process and its workers, start included.
--baseline-code runs the baseline with another checkout's backend (e.g. `git archive main`);
--work keeps the built shot and renders there and reuses them on the next run.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BPY = REPO / ".venv-blender" / "bin" / "python"
RENDERED = (34, 36, 38, 40)  # frames of the collapse: the fragments move, so flow and debris are real
# name: (exr_codec, color_depth). "16" makes only Combined half float: Blender writes the data
# passes as float32 whatever it says (README "Speed of the passes and control stages").
CODECS = {"none": ("NONE", "16"), "rle": ("RLE", "16"), "zip": ("ZIP", "16"), "old": ("ZIP", "32")}


def render(shot_dir: str, out_dir: str, size: str) -> None:
    """In Blender's Python: render RENDERED of the baked shot, each saved with both codecs."""
    import bpy

    sys.path.insert(0, str(REPO))
    from addon.core.preset import preset_from_dict
    from addon.scene import passes

    bpy.ops.wm.open_mainfile(filepath=str(Path(shot_dir) / "shot.blend"))
    manifest = json.loads((Path(shot_dir) / "shot.json").read_text())
    scene = next(s for s in bpy.data.scenes if s.camera is not None)
    passes.configure(scene, preset_from_dict(manifest["preset"], source="shot.json"))
    scene.render.resolution_x, scene.render.resolution_y = map(int, size.split("x"))
    settings = scene.render.image_settings
    for frame in RENDERED:
        scene.frame_set(frame)
        with bpy.context.temp_override(scene=scene):
            bpy.ops.render.render()
        for name, (codec, depth) in CODECS.items():
            settings.exr_codec, settings.color_depth = codec, depth
            bpy.data.images["Render Result"].save_render(str(Path(out_dir) / f"{name}_{frame:04d}.exr"), scene=scene)


def make_shot(base: Path, renders: Path, codec: str, size: str, frames: int) -> Path:
    """A shot of `frames` frames whose passes cycle through the renders of one codec."""
    manifest = json.loads((base / "shot.json").read_text())
    first = manifest["frame_start"]
    camera = manifest["camera"]
    shot = renders.parent / f"shot_{codec}_{size}"
    (shot / "passes").mkdir(parents=True)
    for i in range(frames):
        source = RENDERED[i % len(RENDERED)]
        os.link(renders / f"{codec}_{source:04d}.exr", shot / "passes" / f"{first + i:04d}.exr")
    moved = manifest.get("moved", {})
    manifest.update({
        "frame_end": first + frames - 1,
        "resolution": [int(v) for v in size.split("x")],
        "camera": {str(first + i): camera[str(RENDERED[i % len(RENDERED)])] for i in range(frames)},
        "moved": {str(first + i): moved.get(str(RENDERED[i % len(RENDERED)]), []) for i in range(frames)},
    })
    (shot / "shot.json").write_text(json.dumps(manifest))
    return shot


def timed(command: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """Wall and CPU seconds (the process and the workers it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode:
        sys.exit(result.stdout[-2000:] + result.stderr[-2000:])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def same_maps(ours: Path, theirs: Path) -> tuple[int, list[str]]:
    """(files compared, those that differ): PNGs by decoded pixels and mode, .npy by bytes."""
    names = sorted(p.relative_to(ours) for p in ours.rglob("*") if p.suffix in (".png", ".npy"))
    if names != sorted(p.relative_to(theirs) for p in theirs.rglob("*") if p.suffix in (".png", ".npy")):
        return len(names), ["the two runs wrote different files"]
    import numpy as np  # here: the --render half runs in Blender's Python, which has neither
    from PIL import Image

    differ = []
    for name in names:
        if name.suffix == ".npy":
            same = (ours / name).read_bytes() == (theirs / name).read_bytes()
        else:
            a, b = Image.open(ours / name), Image.open(theirs / name)
            same = a.mode == b.mode and np.array_equal(np.asarray(a), np.asarray(b))
        if not same:
            differ.append(str(name))
    return len(names), differ


def fresh_copy(shot: Path, runs: Path) -> Path:
    """A new shot directory in `runs` with `shot`'s shot.json and passes (hard links) and no
    control maps yet. Each timed run gets one and nothing is deleted until the bench ends: on a
    journal-less ext4 (this machine's disk) creating a file costs up to ~0.3 ms more while many
    files were deleted in the last minutes (the kernel skips recently freed inodes, ext4's
    `recently_deleted`), which made up to a third of the stage's time when each run deleted the
    last one's maps. (So a bench started right after another is slowed by the first one's cleanup.)"""
    copy = runs / f"{shot.name}.{len(list(runs.glob(shot.name + '.*')))}"
    (copy / "passes").mkdir(parents=True)
    shutil.copy(shot / "shot.json", copy / "shot.json")
    for path in (shot / "passes").iterdir():
        os.link(path, copy / "passes" / path.name)
    return copy


def control(shot: Path, runs: Path, code: Path, workers: int | None, repeat: int) -> tuple[float, float, Path]:
    """Best (wall, CPU) of `repeat` runs, each on a fresh copy of `shot`, and the last copy."""
    env = dict(os.environ)
    env.pop("RUBBLE_CONTROL_WORKERS", None)
    if workers:
        env["RUBBLE_CONTROL_WORKERS"] = str(workers)
    timings = []
    for _ in range(repeat):
        copy = fresh_copy(shot, runs)
        timings.append(timed([sys.executable, "-m", "inference", "control", str(copy)], code, env))
    return (*min(timings), copy)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="512x288,1280x720")
    parser.add_argument("--frames", type=int, default=96, help="frames of the 512x288 shot (fewer at larger sizes)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-code", type=Path, default=REPO,
                        help="checkout whose backend runs the baseline (default: this one)")
    parser.add_argument("--work", type=Path, help="keep the built shot and renders here, reuse them next time")
    parser.add_argument("--keep-runs", action="store_true",
                        help="leave each run's shot copy in --work (see fresh_copy: deleting ~1,000 files a run "
                             "slows the next bench's file creation on a journal-less ext4 for some minutes)")
    parser.add_argument("--render", nargs=3, metavar=("SHOT", "OUT", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.render:
        render(*args.render)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        base = work / "base"
        if not (base / "shot.blend").is_file():
            built = subprocess.run([str(BPY), "-m", "addon.cli", "shot", str(base), "--stages", "build,trigger,bake"],
                                   cwd=REPO, capture_output=True, text=True)
            if built.returncode:
                sys.exit(built.stderr[-3000:])
        print(f"load average at the start: {os.getloadavg()[0]:.1f} (2 cores; other work inflates wall and CPU alike)")
        start = min(timed([sys.executable, "-c", "import inference.__main__, inference.control, inference.passes"],
                          REPO, dict(os.environ))[0] for _ in range(3))
        print(f"process start (imports, no frame): {start:.3f} s, not counted in frames/s")
        print(f"{'size':<10}{'codec':<16}{'MB/frame':>9}{'backend':>10}{'workers':>8}{'frames/s':>10}{'CPU s/frame':>12}")
        figures = {}
        runs = Path(tempfile.mkdtemp(prefix="runs.", dir=work))  # every run's maps, deleted at the end
        for size in args.sizes.split(","):
            renders = work / size / "renders"
            if not all((renders / f"{codec}_{f:04d}.exr").is_file() for codec in CODECS for f in RENDERED):
                renders.mkdir(parents=True, exist_ok=True)
                done = subprocess.run([str(BPY), __file__, "--render", str(base), str(renders), size],
                                      cwd=REPO, capture_output=True, text=True)
                if done.returncode:
                    sys.exit(done.stderr[-3000:])
            width, height = map(int, size.split("x"))
            # --frames at 512x288, fewer at larger sizes (the same pixels, at least 24 frames): a
            # run's maps stay on disk until the bench ends, ~2 GB for 96 frames at 1280x720.
            frames = max(24, round(args.frames * 512 * 288 / (width * height)))
            print(f"{size}: a shot of {frames} frames")
            shots = {}
            for codec in CODECS:
                shutil.rmtree(work / size / f"shot_{codec}_{size}", ignore_errors=True)
                shots[codec] = make_shot(base, renders, codec, size, frames)
            configs = [("old", args.baseline_code, None), ("rle", args.baseline_code, None), ("rle", REPO, None),
                       ("zip", REPO, None), ("none", REPO, 1), ("none", REPO, None)]
            last = {}
            for codec, code, workers in configs:
                wall, cpu, last[(codec, code == REPO)] = control(shots[codec], runs, code, workers, args.repeat)
                mb = sum((renders / f"{codec}_{f:04d}.exr").stat().st_size for f in RENDERED) / len(RENDERED) / 1e6
                label = f"{CODECS[codec][0]} {'half colour' if CODECS[codec][1] == '16' else 'float32'}"
                fps = frames / max(wall - start, 1e-9)
                figures[(size, codec, code == REPO, workers)] = (fps, cpu / frames)
                print(f"{size:<10}{label:<16}{mb:>9.2f}{'this' if code == REPO else 'baseline':>10}"
                      f"{workers or 'all':>8}{fps:>10.1f}{cpu / frames:>12.4f}", flush=True)
            # Exactness: the baseline's maps from RLE passes against this checkout's from uncompressed
            # ones (both lossless, so the same pixels in).
            compared, differ = same_maps(last[("none", True)] / "control", last[("rle", False)] / "control")
            print(f"{size}: maps from NONE passes (this) against RLE passes (baseline): {compared} files, "
                  f"{len(differ)} differ{': ' + ', '.join(differ[:5]) if differ else ''}", flush=True)
        for size in args.sizes.split(","):
            fps, cpu = figures[(size, "none", True, None)]
            print(f"ISSUE 16 FIGURE {size}: {fps:.1f} frames/s with every core, {cpu:.4f} CPU s/frame "
                  f"(uncompressed passes; target at 512x288: >= 100 frames/s)")
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        if not args.keep_runs:
            shutil.rmtree(runs)

if __name__ == "__main__":
    main()
