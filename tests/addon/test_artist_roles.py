"""Roles the artist tags (`rubble_role` on their own objects): linked into the shot, simulated,
rendered with a pass index of their own, recorded in shot.json, never harmed by a rebuild."""
import json
import re

import bpy
import numpy as np
import pytest

from addon import pipeline
from addon.core.preset import load_preset
from addon.scene import ownership, roles
from conftest import SMALL_SHOT, run_cli, write_preset
from test_artist_session import in_session
from test_passes import read_pass

STAGES = ("build", "trigger", "bake")


def box(name, size, location):
    h = size / 2
    corners = [(x, y, z) for x in (-h, h) for y in (-h, h) for z in (-h, h)]
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(corners, [], faces)
    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    return obj


def artist_file():
    """The artist's scene holds a car (a rigid body, dropped from 3 m in front of the
    building) tagged "vehicle"; another artist scene holds a lamp (no rigid body, hanging in view) tagged "prop"."""
    pipeline.reset_session()
    scene = bpy.context.scene
    car = box("Car", 1.5, (0.0, -9.0, 3.0))
    car["rubble_role"] = "vehicle"
    scene.collection.objects.link(car)
    view_layer = scene.view_layers[0]
    view_layer.objects.active = car
    car.select_set(True)
    with bpy.context.temp_override(scene=scene, view_layer=view_layer, active_object=car,
                                   selected_objects=[car], selected_editable_objects=[car]):
        bpy.ops.rigidbody.objects_add(type="ACTIVE")
    car.rigid_body.mass = 1200.0
    street = bpy.data.scenes.new("Street")
    lamp = box("Lamp Post", 1.2, (2.5, -9.0, 2.5))
    lamp["rubble_role"] = "prop"
    street.collection.objects.link(lamp)
    return scene, car, lamp


def snapshot(obj):
    return {"name": obj.name, "data": obj.data, "vertices": [tuple(v.co) for v in obj.data.vertices],
            "location": tuple(obj.location), "role": obj["rubble_role"], "mass": obj.rigid_body and obj.rigid_body.mass}


def test_tagged_objects_are_linked_simulated_recorded_and_survive_a_rebuild(tmp_path):
    artist, car, lamp = artist_file()
    before = {o.name: snapshot(o) for o in (car, lamp)}
    shot_dir = tmp_path / "shot"
    preset_path = write_preset(tmp_path / "a.toml", **SMALL_SHOT)
    first = in_session(shot_dir, load_preset(preset_path), STAGES)

    manifest = json.loads((shot_dir / "shot.json").read_text())
    assert {k: v for k, v in manifest["roles"].items() if roles.FIRST_INDEX <= int(k) <= roles.LAST_INDEX} \
        == {"4": "prop", "5": "vehicle"}  # sorted role names -> the reserved range, in order
    assert manifest["tagged"] == {"Car": "vehicle", "Lamp Post": "prop"}
    assert (car.pass_index, lamp.pass_index) == (5, 4)
    shot = first.scene
    assert car.name in shot.objects and lamp.name in shot.objects
    assert car.name in shot.rigidbody_world.collection.objects and lamp.rigid_body is None
    shot.frame_set(shot.frame_end)  # the car falls in the shot's own simulation
    assert car.matrix_world.translation.z < 3.0 - 0.05

    # shot.blend carries them (a farm chunk renders from it), and a chunk renders them
    # without rebuilding: its scene key (from shot.json's `tagged`) is the session's.
    with bpy.data.libraries.load(str(shot_dir / "shot.blend")) as (stored, _):
        assert {"Car", "Lamp Post"} <= set(stored.objects)
    chunk = run_cli("shot", str(shot_dir), "--preset", str(preset_path), "--stages", "passes", "--frames", "1-1")
    assert chunk.returncode == 0, chunk.stderr[-3000:]
    assert "build: up to date" in chunk.stderr + chunk.stdout
    index = read_pass(shot_dir / "passes" / "0001.exr", "Object Index", "IndexOB")["X"]
    assert (index == 5).any() and (index == 4).any(), np.unique(index)

    # A rebuild (changed building) unlinks them and changes nothing of theirs.
    bigger = {**SMALL_SHOT, "building": {**SMALL_SHOT["building"], "storeys": 3}}
    job = in_session(shot_dir, load_preset(write_preset(tmp_path / "b.toml", **bigger)), STAGES)
    assert {o.name: snapshot(o) for o in (car, lamp)} == before
    assert (car.pass_index, lamp.pass_index) == (5, 4)  # Rubble's to set (scene/roles.py), and stable
    assert bpy.data.objects.get("Car") == car and bpy.data.objects.get("Lamp Post") == lamp
    assert car.name in artist.objects and lamp.name in bpy.data.scenes["Street"].objects
    assert car.name in artist.rigidbody_world.collection.objects
    assert car.name in job.scene.objects  # linked again, exactly once
    # The artist's own "RigidBodyWorld" collection makes Rubble's one "RigidBodyWorld.001": only
    # the artist's names must stay unsuffixed.
    for attr in ("objects", "meshes", "collections"):
        blocks = list(getattr(bpy.data, attr))
        assert not [b.name for b in blocks if re.search(r"\.\d{3}$", b.name) and not ownership.is_owned(b, "shot")], \
            f"{attr}: a suffixed name"
        assert not [b.name for b in blocks if b.users == 0], f"{attr}: orphans left behind"


def test_a_new_tag_is_a_new_scene_key(tmp_path):
    artist, car, lamp = artist_file()
    job = pipeline.ShotJob(shot_dir=tmp_path, preset=load_preset(write_preset(tmp_path / "a.toml", **SMALL_SHOT)))
    key = job.scene_key()
    car["rubble_role"] = "truck"
    assert job.scene_key() != key
    renamed = job.scene_key()
    lamp.name = "Lamp"
    assert job.scene_key() != renamed


@pytest.mark.parametrize("role, message", [
    ("has space", "letters, digits"),
    ("", "letters, digits"),
    ("x" * 33, "letters, digits"),
    ("building", "one of Rubble's own roles"),
    ("ground", "one of Rubble's own roles"),
    ("debris", "one of Rubble's own roles"),
])
def test_bad_or_reserved_role_names_are_refused_before_any_work(tmp_path, role, message):
    artist, car, lamp = artist_file()
    car["rubble_role"] = role
    with pytest.raises(pipeline.StageError, match=message) as err:
        in_session(tmp_path / "shot", load_preset(write_preset(tmp_path / "a.toml", **SMALL_SHOT)), STAGES)
    assert "'Car'" in str(err.value)
    assert ownership.find_scene(ownership.SHOT) is None and car.pass_index == 0


def test_more_roles_than_the_reserved_range_are_refused(tmp_path):
    artist, car, lamp = artist_file()
    for k in range(12):  # with "prop" and "vehicle": 14 distinct roles for 12 indices
        obj = box(f"Crate {k}", 0.5, (k, -12.0, 0.25))
        obj["rubble_role"] = f"crate-{k:02d}"
        artist.collection.objects.link(obj)
    with pytest.raises(pipeline.StageError, match=r"14 distinct rubble_role .* at most 12 .* 4\.\.15"):
        in_session(tmp_path / "shot", load_preset(write_preset(tmp_path / "a.toml", **SMALL_SHOT)), STAGES)
