"""Fragment meshes, one object per Voronoi cell, tagged as Rubble's."""
from __future__ import annotations

import bpy
import numpy as np

from ...core.destruction.fracture import Fracture
from ..ownership import own, own_object

COLLECTION = "Rubble Building"
# Object pass indices: 1..3 are shot_manifest.ROLE_INDEX, 4..15 the artist's roles (scene/roles.py);
# fragment k gets FRAGMENT_INDEX_BASE + k (the Object Index pass is a float, so thousands fit).
FRAGMENT_INDEX_BASE = 16


def tag(obj: bpy.types.Object, role: str, pass_index: int) -> None:
    """Mark an object (and its mesh) as Rubble's, with its role and pass index."""
    own_object(obj)
    obj["rubble_role"] = role
    obj.pass_index = pass_index


def fragment_objects(scene: bpy.types.Scene, fracture: Fracture) -> list[bpy.types.Object]:
    """One mesh object per fragment, origin at its centroid and scale 1 (as rigid bodies prefer)."""
    coll = own(bpy.data.collections.new(COLLECTION))
    scene.collection.children.link(coll)
    objs = []
    for k, frag in enumerate(fracture.fragments):
        element = fracture.elements[frag.element]
        name = f"{element.name} #{k}"  # not ".148": that reads as Blender's duplicate suffix
        mesh = bpy.data.meshes.new(name)
        local = frag.vertices - frag.centroid
        mesh.from_pydata(local.tolist(), [], frag.faces)
        mesh.update()
        obj = bpy.data.objects.new(name, mesh)
        obj.location = tuple(float(v) for v in frag.centroid)
        tag(obj, "building", FRAGMENT_INDEX_BASE + k)
        obj["rubble_element"] = element.name
        obj["rubble_kind"] = element.kind
        obj["rubble_material"] = element.material
        coll.objects.link(obj)
        objs.append(obj)
    return objs


def fragment_roles(fracture: Fracture) -> dict[str, dict]:
    """index -> element, kind, material, role: what shot.json records for each fragment."""
    out = {}
    for k, frag in enumerate(fracture.fragments):
        e = fracture.elements[frag.element]
        out[str(FRAGMENT_INDEX_BASE + k)] = {"role": "building", "element": e.name, "kind": e.kind,
                                             "material": e.material}
    return out


def rest_positions(objs) -> np.ndarray:
    return np.array([tuple(o.matrix_world.translation) for o in objs])


def moved_records(scene: bpy.types.Scene, objs, frames, threshold_m: float) -> dict[int, list[int]]:
    """Per frame, the pass indices of fragments farther than `threshold_m` from where they
    stood at the first of `frames` (after the pre-roll settled them): what still stands
    versus what falls, for the control-map stage."""
    frames = list(frames)
    scene.frame_set(frames[0])
    rest = rest_positions(objs)
    index = np.array([o.pass_index for o in objs])
    out = {}
    for frame in frames:
        scene.frame_set(frame)
        moved = np.linalg.norm(rest_positions(objs) - rest, axis=1) > threshold_m
        out[frame] = [int(i) for i in index[moved]]
    return out
