"""Stage `bake`: rigid bodies, a baked point cache, and the per-frame camera for shot.json.

The cache is baked once and saved in shot.blend, so any frame chunk on any machine
renders the same collapse.
"""
from __future__ import annotations

from typing import Iterator

import bpy

from ..core.preset import Preset
from ..core.shot_manifest import camera_record
from .ownership import own

# Densities in kg/m^3: normal-weight concrete 24 kN/m^3 and solid brick masonry
# ~19 kN/m^3 (EN 1991-1-1, Annex A, Tables A.1 and A.2), divided by g.
DENSITY = {"concrete": 2400.0, "masonry": 1900.0}
LEAD_IN_FRAMES = 1
# Friction between rough concrete surfaces (mu ~ 0.6, EN 1992-1-1 6.2.5 "rough" interface).
FRICTION = 0.6


def _add_rigid_body(scene, obj, kind: str) -> None:
    with bpy.context.temp_override(scene=scene, object=obj, active_object=obj, selected_objects=[obj]):
        bpy.ops.rigidbody.object_add(type=kind)


def setup_rigid_bodies(scene: bpy.types.Scene, pieces, ground, preset: Preset) -> None:
    if scene.rigidbody_world is None:
        with bpy.context.temp_override(scene=scene):
            bpy.ops.rigidbody.world_add()
    world = scene.rigidbody_world
    if world.collection is None:  # made here rather than by object_add, so Rubble can tag it
        world.collection = bpy.data.collections.new("RigidBodyWorld")
    own(world.collection)
    # The simulation starts one frame before the shot, at rest. A kinematic (animated) piece
    # that moves from the cache's very first frame makes Bullet's result vary from bake to
    # bake (two outcomes, about half each, measured on 5.0.1 and 4.2.23 with the trigger on
    # the first frame); one frame of lead makes every bake of a preset identical, so farm
    # chunks and an artist's session render the same collapse.
    world.point_cache.frame_start = preset.shot.frame_start - LEAD_IN_FRAMES
    world.point_cache.frame_end = preset.shot.frame_end
    density = DENSITY[preset.building.material]
    for obj in pieces:
        _add_rigid_body(scene, obj, "ACTIVE")
        body = obj.rigid_body
        dims = obj.dimensions
        body.mass = density * dims.x * dims.y * dims.z
        body.friction = FRICTION
        body.collision_shape = "BOX"
        body.kinematic = bool(obj.get("rubble_kinematic", False))
    _add_rigid_body(scene, ground, "PASSIVE")
    ground.rigid_body.friction = FRICTION


def bake(scene: bpy.types.Scene) -> None:
    cache = scene.rigidbody_world.point_cache
    with bpy.context.temp_override(scene=scene, point_cache=cache):
        bpy.ops.ptcache.free_bake()
        bpy.ops.ptcache.bake(bake=True)
    if not cache.is_baked:
        raise RuntimeError("The rigid-body bake did not complete; see the log above for Bullet's message.")


def camera_records(scene: bpy.types.Scene) -> Iterator[tuple[int, dict]]:
    """The camera at each frame, as the backend needs it to turn normals into camera space."""
    cam = scene.camera
    for frame in range(scene.frame_start, scene.frame_end + 1):
        scene.frame_set(frame)
        data = cam.data
        yield frame, camera_record(cam.matrix_world, data.lens, data.sensor_width, data.sensor_height,
                                   data.sensor_fit, data.clip_start, data.clip_end)
