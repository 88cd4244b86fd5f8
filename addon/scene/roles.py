"""Roles the artist tags: their own objects, linked into the shot with a pass index of their own.

An artist sets the custom property `rubble_role = "<name>"` on an object of theirs (a
character, a car, a lamp post) in any scene of their file. The build stage links those
objects into the shot's scene, in a collection tagged as Rubble's, so they are simulated
as the artist set them up (a rigid body takes part in the shot's world) and rendered in
the passes; shot.json's `roles` maps their pass index to the role name.

The objects stay the artist's: a rebuild unlinks them (the owned collection goes, see
ownership.remove) and never removes, renames or edits them. One exception, on purpose:
Rubble owns the `pass_index` of a tagged object and sets it at every build (restoring it
would need a hook after every render, farm chunks included; the Object Index pass is the
point of the tag).
"""
from __future__ import annotations

import json
from pathlib import Path

import bpy

from ..core.shot_manifest import ARTIST_ROLE_NAME as NAME
from ..core.shot_manifest import ROLE_INDEX
from .ownership import EDIT, SHOT, is_owned, own

PROPERTY = "rubble_role"
COLLECTION = "Rubble Artist Roles"
# Pass indices reserved for artist roles: 1..3 are Rubble's (shot_manifest.ROLE_INDEX),
# 16 and up are fragments (destruction/objects.FRAGMENT_INDEX_BASE).
FIRST_INDEX, LAST_INDEX = 4, 15


class RoleError(ValueError):
    pass


def tagged() -> dict[str, str]:
    """object name -> role of every artist object carrying `rubble_role`, from the artist's
    scenes only (Rubble's own objects carry a role too, and are not the artist's)."""
    out = {}
    for scene in bpy.data.scenes:
        if is_owned(scene, SHOT) or is_owned(scene, EDIT):
            continue
        for obj in scene.objects:
            if PROPERTY in obj and not is_owned(obj, SHOT):
                out[obj.name] = obj[PROPERTY]
    return dict(sorted(out.items()))


def recorded(shot_dir: Path) -> dict[str, str]:
    """object name -> role as the shot recorded it (shot.json `tagged`): what shot.blend
    carries, for a process with no artist's file (a farm chunk). Empty when unreadable:
    the stages then rebuild, and say why if the file is bad (pipeline.open_or_new_scene)."""
    try:
        manifest = json.loads((Path(shot_dir) / "shot.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    value = manifest.get("tagged") if isinstance(manifest, dict) else None
    return dict(value) if isinstance(value, dict) else {}


def indices(tags: dict[str, str]) -> dict[str, int]:
    """role -> pass index, one per distinct role in sorted order of names (stable); refuses
    a bad name, one of Rubble's own roles, or more roles than the reserved range holds."""
    for obj_name, role in tags.items():
        if not isinstance(role, str) or not NAME.fullmatch(role):
            raise RoleError(f"Object {obj_name!r} has {PROPERTY} = {role!r}: a role is 1-32 letters, digits, "
                            "'_' or '-'. Rename the role in the object's custom properties.")
        if role in ROLE_INDEX:
            raise RoleError(f"Object {obj_name!r} has {PROPERTY} = {role!r}, one of Rubble's own roles "
                            f"({', '.join(ROLE_INDEX)}). Choose another name.")
    roles = sorted(set(tags.values()))
    room = LAST_INDEX - FIRST_INDEX + 1
    if len(roles) > room:
        raise RoleError(f"{len(roles)} distinct {PROPERTY} values ({', '.join(roles)}); at most {room} fit in "
                        f"pass indices {FIRST_INDEX}..{LAST_INDEX}. Give several objects the same role.")
    return {role: FIRST_INDEX + k for k, role in enumerate(roles)}


def link(scene: bpy.types.Scene, tags: dict[str, str]) -> dict[str, int]:
    """Link the tagged objects into `scene` (and its rigid body world when they have a rigid
    body) and set their pass index; returns role -> pass index."""
    role_index = indices(tags)
    if not tags:
        return role_index
    coll = own(bpy.data.collections.new(COLLECTION))
    scene.collection.children.link(coll)
    world = scene.rigidbody_world
    for name, role in tags.items():
        obj = bpy.data.objects[name]
        coll.objects.link(obj)
        obj.pass_index = role_index[role]
        if obj.rigid_body is not None and world is not None and world.collection is not None:
            world.collection.objects.link(obj)
    return role_index
