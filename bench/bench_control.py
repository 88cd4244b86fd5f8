"""Frames per second of the control stage (EXR reading, depth, normal, clay, flow, occlusion and
masks), the EXR codec of the passes, and the baseline, all measured in this run.

    .venv-inference/bin/python bench/bench_control.py [--sizes 512x288,1280x720] [--frames 96]
                                                     [--baseline-code DIR]

Real passes: the default preset's building (1,100 fragments) is built and baked once, then a
few frames of its collapse are rendered by Cycles at each size, each render saved twice,
with the EXR settings of addon/scene/passes.py (RLE, half-float colour) and with the old ones
(ZIP, float32 everywhere). A shot of --frames frames cycles through those renders (hard links:
reading and hashing cost the same, the disk does not fill). Each configuration runs
`python -m inference control` in a fresh process, best of --repeat; process start (Python,
numpy, Pillow, OpenEXR and the backend's modules, no frame) is measured alone and reported
apart, and frames/s = frames / (wall - start). CPU s/frame counts the workers too.
--baseline-code runs the baseline with another checkout's backend (e.g. `git archive main`).
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
CODECS = {"none": ("NONE", "16"), "rle": ("RLE", "16"), "old": ("ZIP", "32")}


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


def control(shot: Path, code: Path, workers: int | None, repeat: int) -> tuple[float, float]:
    env = dict(os.environ)
    env.pop("RUBBLE_CONTROL_WORKERS", None)
    if workers:
        env["RUBBLE_CONTROL_WORKERS"] = str(workers)
    runs = []
    for _ in range(repeat):
        shutil.rmtree(shot / "control", ignore_errors=True)
        runs.append(timed([sys.executable, "-m", "inference", "control", str(shot)], code, env))
    return min(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="512x288,1280x720")
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-code", type=Path, default=REPO,
                        help="checkout whose backend runs the baseline (default: this one)")
    parser.add_argument("--render", nargs=3, metavar=("SHOT", "OUT", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.render:
        render(*args.render)
        return
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        built = subprocess.run([str(BPY), "-m", "addon.cli", "shot", str(base), "--stages", "build,trigger,bake"],
                               cwd=REPO, capture_output=True, text=True)
        if built.returncode:
            sys.exit(built.stderr[-3000:])
        start = min(timed([sys.executable, "-c", "import inference.__main__, inference.control, inference.passes"],
                          REPO, dict(os.environ))[0] for _ in range(3))
        print(f"process start (imports, no frame): {start:.3f} s, not counted below")
        print(f"{'size':<10}{'codec':<16}{'MB/frame':>9}{'backend':>10}{'workers':>8}{'frames/s':>10}{'CPU s/frame':>12}")
        for size in args.sizes.split(","):
            renders = Path(tmp) / size / "renders"
            renders.mkdir(parents=True)
            done = subprocess.run([str(BPY), __file__, "--render", str(base), str(renders), size],
                                  cwd=REPO, capture_output=True, text=True)
            if done.returncode:
                sys.exit(done.stderr[-3000:])
            shots = {codec: make_shot(base, renders, codec, size, args.frames) for codec in CODECS}
            configs = [("old", args.baseline_code, 1), ("new", REPO, 1), ("new", REPO, None)]
            for codec, code, workers in configs:
                wall, cpu = control(shots[codec], code, workers, args.repeat)
                mb = sum((renders / f"{codec}_{f:04d}.exr").stat().st_size for f in RENDERED) / len(RENDERED) / 1e6
                label = f"{CODECS[codec][0]} {'half colour' if CODECS[codec][1] == '16' else 'float32'}"
                print(f"{size:<10}{label:<16}{mb:>9.2f}{'baseline' if code is args.baseline_code else 'this':>10}"
                      f"{workers or 'all':>8}{args.frames / max(wall - start, 1e-9):>10.1f}{cpu / args.frames:>12.4f}",
                      flush=True)


if __name__ == "__main__":
    main()
