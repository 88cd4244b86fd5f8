"""What Rubble made in a .blend, known by a tag, never by a name.

An artist's own scene may well be called "Rubble"; only data-blocks that carry
`ID["rubble_owner"]` are Rubble's to replace or remove. Every stage (and any new
scene module) tags what it creates with `own()`; `remove()` drops a kind of data
(the shot, or the edit) with all its objects, meshes, cameras, lights, actions,
collections and worlds in one batch, so nothing is left as an orphan and rebuilt
objects keep their names instead of piling up `.001` suffixes.
"""
from __future__ import annotations

import bpy

TAG = "rubble_owner"
SHOT, EDIT = "shot", "edit"

# The bpy.data collections Rubble creates data in (materials are shared and reused by name).
_KINDS_OF_DATA = ("scenes", "objects", "meshes", "cameras", "lights", "actions", "collections", "worlds")


def own(data_block, kind: str = SHOT):
    """Tag a data-block Rubble created; returns it, so creation and tagging read as one."""
    data_block[TAG] = kind
    return data_block


def own_object(obj: bpy.types.Object, kind: str = SHOT) -> bpy.types.Object:
    """An object with its data (mesh, camera, light) and its animation, if any."""
    own(obj, kind)
    if obj.data is not None:
        own(obj.data, kind)
    if obj.animation_data is not None and obj.animation_data.action is not None:
        own(obj.animation_data.action, kind)
    return obj


def own_animations(scene: bpy.types.Scene, kind: str = SHOT) -> None:
    """Actions keyed onto Rubble's objects after they were tagged (triggers) are Rubble's too."""
    for obj in scene.objects:
        if is_owned(obj, kind) and obj.animation_data is not None and obj.animation_data.action is not None:
            own(obj.animation_data.action, kind)


def is_owned(data_block, kind: str) -> bool:
    return data_block.get(TAG) == kind


def find_scene(kind: str) -> bpy.types.Scene | None:
    return next((s for s in bpy.data.scenes if is_owned(s, kind)), None)


def owned(kind: str) -> list:
    return [block for attr in _KINDS_OF_DATA for block in getattr(bpy.data, attr) if is_owned(block, kind)]


def remove(kind: str) -> None:
    """Remove everything of this kind at once (one batch: no quadratic per-ID removal)."""
    blocks = owned(kind)
    if blocks:
        _show_another_scene(set(s for s in blocks if isinstance(s, bpy.types.Scene)))
        bpy.data.batch_remove(blocks)


def _show_another_scene(going: set) -> None:
    """A window showing a scene that is about to go shows one of the artist's instead, so
    Blender never draws a removed scene."""
    others = [s for s in bpy.data.scenes if s not in going]
    for window in bpy.context.window_manager.windows if others else ():
        if window.scene in going:
            window.scene = others[0]


def new_scene(name: str, kind: str) -> bpy.types.Scene:
    """A fresh scene of this kind; the previous one of the same kind goes, with its data."""
    remove(kind)
    return own(bpy.data.scenes.new(name), kind)
