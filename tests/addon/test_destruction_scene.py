"""Destruction in real bpy: a small fractured building stands, bodies fall as ½gt²,
bonds hold through the warm-up, and two processes bake identical transforms."""
import dataclasses
import json
import subprocess
import sys

import bpy
import numpy as np
import pytest

from addon.core.destruction import bonds as bond_maths
from addon.core.preset import load_preset
from addon.scene.destruction import objects, physics, stage
from conftest import REPO


def small_preset(**building):
    p = load_preset()
    b = dataclasses.replace(p.building, **{"storeys": 2, "bays_x": 1, "bays_y": 1, "walls": "masonry",
                                           "walls_from_storey": 0, **building})
    return dataclasses.replace(p, building=b, shot=dataclasses.replace(p.shot, frame_start=25, frame_end=48),
                               simulation=dataclasses.replace(p.simulation, preroll_frames=24, warmup_frames=12))


@pytest.fixture
def scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


def run_to(scene, built, last, first=None):
    physics.simulate(scene, built.events, last, first)


def positions(objs):
    return np.array([tuple(o.matrix_world.translation) for o in objs])


def test_threshold_follows_the_documented_formula():
    # 1 MPa over 0.1 m^2 = 100 kN; one substep at 24 fps x 10 substeps lasts 1/240 s.
    assert bond_maths.threshold(1e5, fps=24, substeps=10) == pytest.approx(1e5 / 240)
    assert bond_maths.threshold(1e5, fps=24, substeps=10, time_scale=0.5, n=2) == pytest.approx(1e5 / 240 / 4)
    assert bond_maths.threshold(1e5, fps=48, substeps=10) == pytest.approx(1e5 / 480)


def test_the_building_is_one_rigid_body_per_fragment_with_mass_from_density(scene):
    preset = small_preset()
    built = stage.build(scene, preset)
    assert len(built.fragments) == len(built.fracture.fragments) > 20
    assert len(built.bonds) == len(built.fracture.contacts)
    for obj, frag, mass in zip(built.fragments, built.fracture.fragments, built.masses):
        assert obj.rigid_body.mass == pytest.approx(mass, rel=1e-6)
        assert tuple(obj.scale) == (1.0, 1.0, 1.0)
        assert np.allclose(tuple(obj.location), frag.centroid, atol=1e-5)
    density = preset.materials["concrete"].density_kg_m3
    column = next(k for k, f in enumerate(built.fracture.fragments)
                  if built.fracture.elements[f.element].kind == "column")
    assert built.masses[column] == pytest.approx(density * built.fracture.fragments[column].volume)
    # Every fragment has its own pass index; bonds copy one constraint and are breakable.
    assert len({o.pass_index for o in built.fragments}) == len(built.fragments)
    c = built.bonds[-1].rigid_body_constraint
    assert c.type == "FIXED" and c.use_breaking and c.object1 is not None and c.breaking_threshold > 0


def test_with_no_trigger_the_building_stands_for_120_frames(scene):
    preset = small_preset()
    end = preset.shot.frame_start + 120
    built = stage.build(scene, preset, frame_end=end)
    run_to(scene, built, preset.shot.frame_start)
    settled = positions(built.fragments)
    run_to(scene, built, end, preset.shot.frame_start + 1)
    moved = np.linalg.norm(positions(built.fragments) - settled, axis=1)
    assert moved.max() < 0.01 * preset.building.storey_height_m, f"a fragment moved {moved.max():.3f} m"


def test_a_free_fragment_falls_as_half_g_t_squared(scene):
    preset = small_preset(storeys=1, walls="none")
    built = stage.build(scene, preset, frame_end=30)
    # Keep one fragment, high above the building, with no bonds.
    frag = built.fragments[0]
    for empty in list(built.bonds):
        bpy.data.objects.remove(empty)
    built.bonds.clear()
    frag.location.z += 200.0
    fps = scene.render.fps
    start = scene.rigidbody_world.point_cache.frame_start
    z0 = frag.location.z
    run_to(scene, built, start + 24)
    t = 24 / fps
    drop = z0 - frag.matrix_world.translation.z
    g = -scene.gravity[2]
    assert drop == pytest.approx(0.5 * g * t * t, rel=0.02)


def test_breaking_is_off_during_the_warm_up(scene):
    """A bond far too weak for its load holds until the warm-up ends, then breaks."""
    preset = small_preset(storeys=1, walls="none")
    preset = dataclasses.replace(preset, simulation=dataclasses.replace(preset.simulation, preroll_frames=20,
                                                                        warmup_frames=10))
    built = stage.build(scene, preset, frame_end=40)
    for empty in built.bonds:
        empty.rigid_body_constraint.breaking_threshold = 1e-6
    start = scene.rigidbody_world.point_cache.frame_start
    rest = positions(built.fragments)
    run_to(scene, built, start + 9)
    held = np.linalg.norm(positions(built.fragments) - rest, axis=1).max()
    run_to(scene, built, start + 24, start + 10)
    fell = np.linalg.norm(positions(built.fragments) - rest, axis=1).max()
    assert held < 0.01 and fell > 0.1


def test_thresholds_are_recomputed_when_substeps_change(scene):
    built = stage.build(scene, small_preset(storeys=1))
    before = built.bonds[0].rigid_body_constraint.breaking_threshold
    scene.rigidbody_world.substeps_per_frame *= 2
    physics.update_thresholds(scene, "FIXED")
    assert built.bonds[0].rigid_body_constraint.breaking_threshold == pytest.approx(before / 2, rel=1e-6)


_BAKE = """
import sys, json, dataclasses
sys.path.insert(0, {repo!r})
import bpy
from addon.core.preset import load_preset
from addon.scene.destruction import stage
p = load_preset()
p = dataclasses.replace(p, building=dataclasses.replace(p.building, storeys=2, bays_x=1, bays_y=1),
                        shot=dataclasses.replace(p.shot, frame_start=25, frame_end=36),
                        simulation=dataclasses.replace(p.simulation, preroll_frames=24, warmup_frames=12))
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
built = stage.build(scene, p)
for empty in built.bonds:  # weak bonds: the building falls apart, so the comparison means something
    empty.rigid_body_constraint.breaking_threshold = 1.0
rest = [list(o.matrix_world.translation) for o in built.fragments]
stage.bake(scene, built)
scene.frame_set(36)
print(json.dumps({{"rest": rest, "baked": [[list(row) for row in o.matrix_world] for o in built.fragments]}}))
"""


def test_two_processes_bake_identical_transforms():
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", _BAKE.format(repo=str(REPO))], capture_output=True, text=True,
                             check=True, timeout=300)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert runs[0]["baked"] == runs[1]["baked"]
    moved = np.linalg.norm(np.array(runs[0]["baked"])[:, :3, 3] - np.array(runs[0]["rest"]), axis=1)
    assert moved.max() > 0.5, "nothing moved, so the comparison proves nothing"


def test_moved_records_separate_what_falls_from_what_stands(scene):
    preset = small_preset(storeys=1, walls="none")
    built = stage.build(scene, preset, frame_end=36)
    falling = built.fragments[0]
    for empty in list(built.bonds):  # free one fragment: it falls, the others stand
        c = empty.rigid_body_constraint
        if falling in (c.object1, c.object2):
            built.bonds.remove(empty)
            bpy.data.objects.remove(empty)
    falling.location.z += 50.0
    start = scene.rigidbody_world.point_cache.frame_start
    run_to(scene, built, 24)
    records = objects.moved_records(scene, built.fragments, range(25, 37), threshold_m=0.02)
    assert records[25] == []
    assert records[36] == [falling.pass_index]


def test_fragment_roles_go_into_shot_json_roles(scene):
    from addon.core.shot_manifest import build_manifest
    built = stage.build(scene, small_preset(storeys=1))
    fragments = objects.fragment_roles(built.fracture)
    manifest = build_manifest(small_preset().to_dict(), {}, {}, fragments=fragments, moved={1: []})
    first = str(built.fragments[0].pass_index)
    assert manifest["roles"][first] == "building" and manifest["roles"]["2"] == "ground"
    assert manifest["fragments"][first]["element"] == built.fragments[0]["rubble_element"]
    assert {r["kind"] for r in manifest["fragments"].values()} == {"column", "beam", "slab", "wall"}
    assert manifest["moved"] == {"1": []}


def hanging_bond_holds(kind: str, threshold: float, mass_kg: float, frames: int = 12) -> bool:
    """A body of `mass_kg` hung 1 m below a passive one by one `kind` bond with this breaking
    threshold (N s per substep): still attached after `frames`? (bench_destruction.py uses it
    to measure the GENERIC/FIXED factor.)"""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    made = []
    for name, z in (("Top", 10.0), ("Hang", 9.0)):
        mesh = bpy.data.meshes.new(name)
        mesh.from_pydata([(x * .5, y * .5, w * .5) for x in (-1, 1) for y in (-1, 1) for w in (-1, 1)], [],
                         [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)])
        obj = bpy.data.objects.new(name, mesh)
        obj.location.z = z
        scene.collection.objects.link(obj)
        made.append(obj)
    with bpy.context.temp_override(scene=scene):
        bpy.ops.rigidbody.world_add()
    physics.add_rigid_bodies(scene, made, [1.0, mass_kg], [0.5, 0.5])
    made[0].rigid_body.type = "PASSIVE"
    bond = bpy.data.objects.new("Bond", None)
    bond.location.z = 9.5
    scene.collection.objects.link(bond)
    bpy.context.view_layer.objects.active = bond
    bpy.ops.rigidbody.constraint_add(type=kind)
    c = bond.rigid_body_constraint
    physics.lock_generic(c)
    c.object1, c.object2, c.use_breaking, c.breaking_threshold = made[0], made[1], True, threshold
    for frame in range(1, frames + 1):
        scene.frame_set(frame)
    return abs(made[1].matrix_world.translation.z - 9.0) < 0.05


def _hangs(kind: str, force_n: float, weight_n: float) -> bool:
    """A body of `weight_n` hung by one bond rated for `force_n` (bonds.threshold): still attached?"""
    threshold = bond_maths.threshold(force_n, 24, 10, 1.0, 1, kind)  # a new scene: 24 fps, 10 substeps
    return hanging_bond_holds(kind, threshold, weight_n / 9.81)


@pytest.mark.parametrize("kind", ["FIXED", "GENERIC"])
def test_a_bond_holds_the_force_it_is_rated_for_and_no_more(kind):
    """The threshold formula, checked against Bullet: 10 % over the load holds, 10 % under breaks."""
    weight = 1000.0
    assert _hangs(kind, 1.1 * weight, weight)
    assert not _hangs(kind, 0.9 * weight, weight)
