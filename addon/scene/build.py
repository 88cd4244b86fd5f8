"""Stage `build`, around the building: ground, camera and light (the fractured building
itself is addon/scene/destruction), each tagged as Rubble's."""
from __future__ import annotations

import bpy
from mathutils import Vector

from ..core.camera import CLIP_START_M, building_extent, camera_path
from ..core.preset import Preset
from ..core.shot_manifest import ROLE_INDEX
from .ownership import SHOT, is_owned, own, own_object

_BOX_FACES = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]


def box(name: str, size: tuple[float, float, float], location: tuple[float, float, float],
        collection: bpy.types.Collection, role: str) -> bpy.types.Object:
    """A box whose size lives in the mesh (scale stays 1, as rigid bodies prefer)."""
    hx, hy, hz = (s / 2 for s in size)
    mesh = bpy.data.meshes.new(name)
    verts = [(x * hx, y * hy, z * hz) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    mesh.from_pydata(verts, [], _BOX_FACES)
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    obj.pass_index = ROLE_INDEX[role]
    obj["rubble_role"] = role
    collection.objects.link(obj)
    return own_object(obj)


def _collection(scene: bpy.types.Scene, name: str) -> bpy.types.Collection:
    coll = own(bpy.data.collections.new(name))
    scene.collection.children.link(coll)
    return coll


def building_size(preset: Preset) -> Vector:
    return Vector(building_extent(preset.building))


def build_ground(scene: bpy.types.Scene, preset: Preset) -> bpy.types.Object:
    extent = max(building_size(preset)) * 12
    coll = _collection(scene, "Rubble Ground")
    return box("Ground", (extent, extent, 1.0), (0, 0, -0.5), coll, "ground")


def build_camera(scene: bpy.types.Scene, preset: Preset) -> bpy.types.Object:
    """The shot's camera, framed by `[camera]` (core/camera.py), keyed at the shot's first and
    last frames; the scene's Rubble camera is re-aimed in place when it has one, so a new
    `[camera]` changes the camera and nothing else in the baked scene."""
    path = camera_path(building_extent(preset.building), preset.camera)
    cam = rubble_camera(scene)
    if cam is None:
        cam = bpy.data.objects.new("Rubble Camera", bpy.data.cameras.new("Rubble Camera"))
        scene.collection.objects.link(cam)
    elif cam.animation_data is not None:
        action = cam.animation_data.action
        cam.animation_data_clear()
        if action is not None and action.users == 0:
            bpy.data.actions.remove(action)
    cam.data.lens = preset.camera.lens_mm
    cam.data.clip_start, cam.data.clip_end = CLIP_START_M, path.clip_end
    target = Vector(path.target)
    for frame, loc in ((preset.shot.frame_start, Vector(path.start)), (preset.shot.frame_end, Vector(path.end))):
        cam.location = loc
        cam.rotation_euler = (target - loc).to_track_quat("-Z", "Y").to_euler()
        cam.keyframe_insert("location", frame=frame)
        cam.keyframe_insert("rotation_euler", frame=frame)
    scene.camera = cam
    return own_object(cam)


def rubble_camera(scene: bpy.types.Scene) -> bpy.types.Object | None:
    """The scene's camera when it is Rubble's (an artist's own camera is never re-aimed)."""
    cam = scene.camera
    return cam if cam is not None and is_owned(cam, SHOT) else None


def build_lighting(scene: bpy.types.Scene) -> None:
    sun_data = bpy.data.lights.new("Rubble Sun", "SUN")
    sun_data.energy = 3.0
    sun = bpy.data.objects.new("Rubble Sun", sun_data)
    sun.rotation_euler = (0.8, 0.2, -0.6)
    scene.collection.objects.link(sun)
    own_object(sun)
    world = own(bpy.data.worlds.new("Rubble Sky"))
    world.color = (0.45, 0.47, 0.5)
    if world.node_tree is None:  # Blender 4.x; 5.0 always gives worlds a node tree
        world.use_nodes = True
    background = world.node_tree.nodes.get("Background")
    if background is not None:
        background.inputs["Color"].default_value = (0.45, 0.47, 0.5, 1.0)
        background.inputs["Strength"].default_value = 0.8
    scene.world = world

