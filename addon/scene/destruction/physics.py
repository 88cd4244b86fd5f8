"""Rigid bodies and bonds, batched: one `rigidbody.objects_add` for all fragments, and
one constraint empty copied with `obj.copy()` for every bond (see bench/bench_destruction.py;
one operator call per object is quadratic in the scene size)."""
from __future__ import annotations

from typing import Callable

import bpy
import numpy as np

from ...core.destruction.bonds import Bond, threshold
from ...core.destruction.fracture import GROUND
from ...core.destruction.schema import SimulationSettings
from ..ownership import own, own_object

BONDS_COLLECTION = "Rubble Bonds"


def ensure_world(scene: bpy.types.Scene, sim: SimulationSettings, cache_start: int, cache_end: int) -> None:
    if scene.rigidbody_world is None:
        with bpy.context.temp_override(scene=scene):
            bpy.ops.rigidbody.world_add()
    world = scene.rigidbody_world
    if world.collection is None:  # made here rather than by objects_add, so Rubble can tag it
        world.collection = own(bpy.data.collections.new("RigidBodyWorld"))
    world.substeps_per_frame = sim.substeps
    world.solver_iterations = sim.solver_iterations
    world.time_scale = sim.time_scale
    world.point_cache.frame_start = cache_start
    world.point_cache.frame_end = cache_end


def _select_only(scene, objs, active) -> None:
    """Select `objs` in the scene's own view layer (the scene may not be the window's)."""
    view_layer = scene.view_layers[0]
    for o in view_layer.objects:
        o.select_set(False, view_layer=view_layer)
    for o in objs:
        o.select_set(True, view_layer=view_layer)
    view_layer.objects.active = active


def _scene_context(scene, selected, active):
    """Operators act on the context's scene, view layer and selection; point them at
    `scene` (it may not be the window's). Never temp_override(object=...) for
    constraint_add: it crashes bpy 5.0.1."""
    return bpy.context.temp_override(scene=scene, view_layer=scene.view_layers[0], active_object=active,
                                     selected_objects=selected, selected_editable_objects=selected)


def add_rigid_bodies(scene, objs, masses: np.ndarray, frictions, kind: str = "ACTIVE") -> None:
    """All objects get a rigid body in ONE operator call, then plain property sets."""
    if not objs:
        return
    _select_only(scene, objs, objs[0])
    with _scene_context(scene, objs, objs[0]):
        bpy.ops.rigidbody.objects_add(type=kind)
    for obj, mass, friction in zip(objs, masses, frictions):
        body = obj.rigid_body
        body.collision_shape = "CONVEX_HULL"
        body.mass = float(mass)
        body.friction = float(friction)
    _select_only(scene, [], None)


def lock_generic(rbc) -> None:
    """A GENERIC constraint is free on every axis until limited: lock all six at zero."""
    if rbc.type != "GENERIC":
        return
    for axis in ("x", "y", "z"):
        for kind in ("lin", "ang"):
            setattr(rbc, f"use_limit_{kind}_{axis}", True)
            setattr(rbc, f"limit_{kind}_{axis}_lower", 0.0)
            setattr(rbc, f"limit_{kind}_{axis}_upper", 0.0)


def add_bonds(scene, objs, ground, bonds: list[Bond], sim: SimulationSettings) -> list[bpy.types.Object]:
    """One breakable constraint per bond, copied from one template (`obj.copy()` keeps its
    rigid_body_constraint and joins the world's constraint collection)."""
    if not bonds:
        return []
    coll = own(bpy.data.collections.new(BONDS_COLLECTION))
    scene.collection.children.link(coll)
    template = own_object(bpy.data.objects.new("Bond #0", None))  # copies carry the tag
    template.empty_display_size = 0.1
    coll.objects.link(template)
    # constraint_add acts on the view layer's active object.
    _select_only(scene, [template], template)
    with _scene_context(scene, [template], template):
        bpy.ops.rigidbody.constraint_add(type=sim.constraint_type)
    rbc = template.rigid_body_constraint
    own(scene.rigidbody_world.constraints)  # the collection constraint_add made
    rbc.disable_collisions = True  # bonded pairs do not collide with each other
    rbc.use_breaking = True
    lock_generic(rbc)
    _select_only(scene, [], None)
    fps = scene.render.fps / scene.render.fps_base
    empties = []
    for k, bond in enumerate(bonds):
        empty = template if k == 0 else template.copy()
        if k:
            empty.name = f"Bond #{k}"  # not Blender's "Bond.001" suffixes, which read as duplicates
            coll.objects.link(empty)
        a = objs[bond.a]
        b = ground if bond.b == GROUND else objs[bond.b]
        pb = a.location.copy() if bond.b == GROUND else b.location
        if bond.b == GROUND:
            pb.z = 0.0
        empty.location = (a.location + pb) / 2
        c = empty.rigid_body_constraint
        c.object1, c.object2 = a, b
        # Bullet keeps ignoring collisions between a pair after their bond breaks; a fragment
        # freed from the ground must still land on it.
        c.disable_collisions = bond.b != GROUND
        empty["rubble_bond_force_n"] = bond.force_n
        c.breaking_threshold = threshold(bond.force_n, fps, sim.substeps, sim.time_scale, 1, sim.constraint_type)
        empties.append(empty)
    return empties


# Events: {frame: [callables]}, each run just before the simulation steps to that frame.
# Switching breaking or bonds with keyframes is not deterministic (measured: one run in
# three differed, as the depsgraph may evaluate the keyed value after Bullet steps);
# setting the property between frames from Python is.
Events = dict[int, list[Callable[[], None]]]


def add_event(events: Events, frame: int, fn: Callable[[], None]) -> None:
    events.setdefault(frame, []).append(fn)


def simulate(scene: bpy.types.Scene, events: Events, last: int, first: int | None = None) -> None:
    """Step frame by frame from `first` (default: the cache's first frame) to `last`."""
    start = scene.rigidbody_world.point_cache.frame_start if first is None else first
    for frame in range(start, last + 1):
        for fn in events.get(frame, ()):
            fn()
        scene.frame_set(frame)


def bake(scene: bpy.types.Scene, events: Events) -> None:
    """Simulate the whole cache with the events, then keep it as a bake (saved with the .blend)."""
    cache = scene.rigidbody_world.point_cache
    with bpy.context.temp_override(scene=scene, point_cache=cache):
        bpy.ops.ptcache.free_bake()
    simulate(scene, events, cache.frame_end)
    with bpy.context.temp_override(scene=scene, point_cache=cache):
        bpy.ops.ptcache.bake_from_cache()
    if not cache.is_baked:
        raise RuntimeError("The rigid-body bake did not complete; see the log above for Bullet's message.")


def update_thresholds(scene: bpy.types.Scene, constraint_type: str) -> None:
    """Recompute every bond's threshold after fps, substeps or time_scale changed."""
    world = scene.rigidbody_world
    fps = scene.render.fps / scene.render.fps_base
    for empty in bpy.data.collections[BONDS_COLLECTION].objects:
        empty.rigid_body_constraint.breaking_threshold = threshold(
            empty["rubble_bond_force_n"], fps, world.substeps_per_frame, world.time_scale, 1, constraint_type)
