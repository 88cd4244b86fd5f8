"""Destruction speed: build + fracture + bonds, and simulation seconds per frame, at about
250, 1,000 and 4,000 fragments, with the growth exponent of each (log-log slope).

    .venv-blender/bin/python bench/bench_destruction.py [--frames 10]
    .venv-blender/bin/python bench/bench_destruction.py --measure-type-factor

The building is the 6-storey frame of presets/default.toml, at 2 storeys
with a low cell density for the smallest size, then 6 storeys at two densities. `--measure-type-factor` measures how
much larger a GENERIC constraint's threshold must be than a FIXED one's to hold the
same hanging load (bonds.TYPE_FACTOR documents the result).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "addon"))  # the hanging-bond experiment the tests use

import bpy  # noqa: E402
import numpy as np  # noqa: E402

from addon.core.preset import load_preset  # noqa: E402
from addon.scene.destruction import stage  # noqa: E402
from test_destruction_scene import hanging_bond_holds  # noqa: E402

PRESET = REPO / "presets" / "default.toml"
SIZES = ((2, 0.6), (6, 1.0), (6, 4.0))  # (storeys, cell_density_scale)


def measure(preset, frames: int) -> tuple[int, int, float, float, dict]:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    t0 = time.perf_counter()
    built = stage.build(scene, preset)
    setup = time.perf_counter() - t0
    start = scene.rigidbody_world.point_cache.frame_start
    scene.frame_set(start)
    t0 = time.perf_counter()
    for frame in range(start + 1, start + 1 + frames):
        scene.frame_set(frame)
    per_frame = (time.perf_counter() - t0) / frames
    return len(built.fragments), len(built.bonds), setup, per_frame, built.timings


def slope(xs, ys) -> float:
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def bench(frames: int) -> None:
    base = load_preset(PRESET)
    rows = []
    print(f"{'fragments':>9} {'bonds':>6} {'setup s':>8}  {'of which: fracture, objects, rigid bodies, bonds':<48} "
          f"{'sim s/frame':>11}  (substeps {base.simulation.substeps}, solver iterations "
          f"{base.simulation.solver_iterations})")
    for storeys, density in SIZES:
        preset = dataclasses.replace(base, fracture=dataclasses.replace(base.fracture, cell_density_scale=density),
                                     building=dataclasses.replace(base.building, storeys=storeys))
        n, bonds, setup, per_frame, t = measure(preset, frames)
        rows.append((n, setup, per_frame))
        parts = f"{t['fracture']:.2f}, {t['fragments']:.2f}, {t['rigid_bodies']:.2f}, {t['bonds']:.2f}"
        print(f"{n:>9} {bonds:>6} {setup:>8.2f}  {parts:<48} {per_frame:>11.3f}")
    ns = [r[0] for r in rows]
    print(f"growth exponent (time ~ fragments^k): setup k = {slope(ns, [r[1] for r in rows]):.2f}, "
          f"simulation k = {slope(ns, [r[2] for r in rows]):.2f}")


def breaking_load_threshold(kind: str) -> float:
    """The smallest threshold that holds 100 kg, by bisection (N s per substep)."""
    lo, hi = 1e-3, 1e3
    for _ in range(30):
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if hanging_bond_holds(kind, mid, 100.0) else (mid, hi)
    return hi


def measure_type_factor() -> None:
    world_substeps, fps = 10, 24
    expected = 100.0 * 9.81 / (fps * world_substeps)
    fixed, generic = breaking_load_threshold("FIXED"), breaking_load_threshold("GENERIC")
    print(f"weight impulse per substep m g dt = {expected:.3f} N s; smallest holding threshold: FIXED {fixed:.3f}, "
          f"GENERIC {generic:.3f}; GENERIC / FIXED = {generic / fixed:.3f} (bpy {bpy.app.version_string})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=10, help="simulated frames timed per size")
    parser.add_argument("--measure-type-factor", action="store_true")
    args = parser.parse_args()
    measure_type_factor() if args.measure_type_factor else bench(args.frames)
