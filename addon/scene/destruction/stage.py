"""The destruction build as named, timed steps: layout -> fracture -> fragments ->
rigid bodies -> bonds. The pre-roll starts the simulation before the shot's first frame."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import bpy
import numpy as np

from ...core.destruction import bonds as bond_maths
from ...core.destruction.fracture import Fracture, fracture_building
from ...core.destruction.layout import layout
from ...core.preset import Preset
from .. import build as scene_build
from . import objects, physics


@dataclass
class Built:
    fracture: Fracture
    fragments: list[bpy.types.Object]
    ground: bpy.types.Object
    bonds: list[bpy.types.Object]
    masses: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    # What happens between frames (physics.Events): the warm-up, and triggers that switch bonds.
    events: physics.Events = field(default_factory=dict)


def cache_range(preset: Preset) -> tuple[int, int, int]:
    """(first simulated frame, frame breaking is enabled, last frame)."""
    sim = preset.simulation
    start = preset.shot.frame_start - sim.preroll_frames
    return start, start + sim.warmup_frames, preset.shot.frame_end


def build(scene: bpy.types.Scene, preset: Preset, frame_end: int | None = None) -> Built:
    """The fractured, bonded building of `preset` in `scene` (plus the ground), ready to bake.

    `frame_end` overrides the shot's last frame for the cache (tests simulate longer)."""
    timings: dict[str, float] = {}

    def step(name, fn, *args):
        t0 = time.perf_counter()
        result = fn(*args)
        timings[name] = time.perf_counter() - t0
        return result

    elements = step("layout", layout, preset.building)
    fracture = step("fracture", fracture_building, elements, preset.materials, preset.shot.seed,
                    preset.fracture.cell_density_scale)
    frags = step("fragments", objects.fragment_objects, scene, fracture)
    ground = scene_build.build_ground(scene, preset)
    start, breaking_on, end = cache_range(preset)
    scene.render.fps = preset.shot.fps
    physics.ensure_world(scene, preset.simulation, start, frame_end if frame_end is not None else end)
    masses = bond_maths.masses(fracture, preset.materials)
    frictions = [preset.materials[fracture.elements[f.element].material].friction for f in fracture.fragments]
    step("rigid_bodies", physics.add_rigid_bodies, scene, frags, masses, frictions)
    physics.add_rigid_bodies(scene, [ground], [1.0], [preset.materials[preset.building.material].friction], "PASSIVE")
    bonds = step("bond_maths", bond_maths.make_bonds, fracture, preset.materials, preset.simulation.bond_strength)
    empties = step("bonds", physics.add_bonds, scene, frags, ground, bonds, preset.simulation)
    built = Built(fracture, frags, ground, empties, masses, timings)
    _warm_up(built, start, breaking_on)
    return built


def _warm_up(built: Built, start: int, breaking_on: int) -> None:
    """No bond can break from `start` until `breaking_on`: the start-up impulse of a
    structure at rest is not a load (Bullet Constraints Builder warms up the same way)."""
    def set_breaking(on: bool):
        def apply():
            for empty in built.bonds:
                empty.rigid_body_constraint.use_breaking = on
        return apply
    physics.add_event(built.events, start, set_breaking(start == breaking_on))
    if breaking_on != start:
        physics.add_event(built.events, breaking_on, set_breaking(True))


def bake(scene: bpy.types.Scene, built: Built) -> None:
    """Stage `bake`: the whole cache, pre-roll and triggers' events included."""
    physics.bake(scene, built.events)


def run(scene: bpy.types.Scene, preset: Preset) -> Built:
    """Stage `build` with destruction: shot settings, the fractured bonded building, the
    ground, camera and light (the last two as scene/build.py makes them)."""
    scene.frame_start, scene.frame_end = preset.shot.frame_start, preset.shot.frame_end
    scene.render.resolution_x, scene.render.resolution_y = preset.shot.resolution
    scene.render.resolution_percentage = 100
    built = build(scene, preset)
    scene_build.build_camera(scene, preset)
    scene_build.build_lighting(scene)
    return built


def shot_records(scene: bpy.types.Scene, built: Built, preset: Preset) -> dict:
    """What shot.json records about the fragments: roles by pass index, and per frame the
    fragments that moved from where they stood at the shot's first frame."""
    frames = range(preset.shot.frame_start, preset.shot.frame_end + 1)
    return {"fragments": objects.fragment_roles(built.fracture),
            "moved": objects.moved_records(scene, built.fragments, frames, preset.simulation.moved_threshold_m)}
