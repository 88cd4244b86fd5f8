"""Peak memory and time of `control` (depth statistics + maps), streaming vs the old in-memory path.

The old path (kept here only, as the baseline) decoded every frame's EXR to collect all
disparities in memory for the shot-level percentiles, then decoded every EXR again to write the
maps. The current `python -m inference control` decodes each EXR once and keeps a histogram.
Both run in their own process on the same synthetic shot; peak memory is that process's
ru_maxrss. Also checks that both write the same maps (depth within the histogram's bound).

Run: .venv-inference/bin/python bench/control_stats.py [--frames 50] [--size 960x540]
"""

import argparse
import json
import resource
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "inference"))
from conftest import make_shot, write_passes  # noqa: E402  (the synthetic Blender-layout shot the tests use)


def old_control(shot_dir: Path) -> None:
    """The pre-streaming algorithm: every frame's disparity in memory, each EXR decoded twice."""
    from inference import control, passes
    from inference import shot as shot_module

    shot = shot_module.load(shot_dir)
    depths = [passes.read(shot.pass_path(f), f).depth for f in shot.frames]
    disparity = np.concatenate([1.0 / d[d < control.BACKGROUND_DEPTH] for d in depths])
    low, high = np.percentile(disparity, control.PERCENTILES)
    stats = control.DepthStats(float(low), float(high))
    for frame in shot.frames:
        frame_passes = passes.read(shot.pass_path(frame), frame)
        control.write_map(control.map_path(shot, "depth", frame), control.depth_image(frame_passes.depth, stats), "depth")
        background = frame_passes.depth >= control.BACKGROUND_DEPTH
        normal = control.normal_image(frame_passes.normal, shot.cameras[frame].matrix_world, background)
        control.write_map(control.map_path(shot, "normal", frame), normal, "normal")
        control.write_map(control.map_path(shot, "clay", frame), control.clay_image(frame_passes.combined), "clay")


def measured(mode: str, shot_dir: Path) -> dict:
    """Run one path in a fresh process; return its wall time and peak resident memory."""
    shutil.rmtree(shot_dir / "control", ignore_errors=True)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(shot_dir)], cwd=REPO,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    peak_kib = int(proc.stderr.strip().splitlines()[-1])  # ru_maxrss is KiB on Linux
    return {"seconds": round(seconds, 2), "peak_mib": round(peak_kib / 1024, 1)}


def child(mode: str, shot_dir: str) -> None:
    if mode == "old":
        old_control(Path(shot_dir))
    else:
        sys.argv = ["inference", "control", shot_dir]
        try:
            runpy.run_module("inference", run_name="__main__")
        except SystemExit as exc:
            if exc.code:
                raise
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)


def compare(old: Path, new: Path) -> tuple[int, bool]:
    """Largest depth-map difference (16-bit levels) and whether normal and clay maps are identical."""
    names = sorted(p.relative_to(old) for p in old.rglob("*.png"))
    assert names == sorted(p.relative_to(new) for p in new.rglob("*.png")), "different maps written"
    depth_diff, others_equal = 0, True
    for name in names:
        a, b = (np.asarray(Image.open(root / name), dtype=np.int64) for root in (old, new))
        if name.parts[0] == "depth":
            depth_diff = max(depth_diff, int(np.abs(a - b).max()))
        else:
            others_equal &= bool(np.array_equal(a, b))
    return depth_diff, others_equal


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--size", default="960x540")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "SHOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        shot = make_shot(Path(tmp) / "shot", frames=1, size=(width, height))
        data = json.loads((shot / "shot.json").read_text())
        data["frame_end"] = args.frames
        data["camera"] = {str(f): data["camera"]["1"] for f in range(1, args.frames + 1)}
        (shot / "shot.json").write_text(json.dumps(data))
        for frame in range(1, args.frames + 1):  # the box approaches from z = 9 to z = 2
            box_depth = 9.0 - 7.0 * (frame - 1) / max(1, args.frames - 1)
            write_passes(shot / "passes" / f"{frame:04d}.exr", width, height, box_depth, frame)
        # Measure both before loading any map here: a child's ru_maxrss starts from this process's.
        old = measured("old", shot)
        (shot / "control").rename(Path(tmp) / "old_control")
        new = measured("new", shot)
        depth_diff, other_equal = compare(Path(tmp) / "old_control", shot / "control")
    print(json.dumps({
        "what": f"control, {args.frames} frames at {width}x{height}",
        "old_in_memory": old,
        "streaming": new,
        "peak_memory_ratio_old_over_new": round(old["peak_mib"] / new["peak_mib"], 2),
        "time_ratio_old_over_new": round(old["seconds"] / new["seconds"], 2),
        "max_depth_level_difference": depth_diff,
        "normal_and_clay_identical": other_equal,
    }))


if __name__ == "__main__":
    main()
