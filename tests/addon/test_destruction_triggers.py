"""Triggers in real bpy, on a small building: nothing moves before a trigger's frame, and
each kind does what it says after it."""
import dataclasses
import json
import subprocess
import sys

import bpy
import numpy as np
import pytest

from addon.core.destruction import triggers as spec
from addon.core.preset import PresetError, load_preset, preset_from_dict
from addon.scene.destruction import objects, physics, stage, triggers
from conftest import REPO

FRAME = 30


def small(*trigger_list, **building):
    p = load_preset()
    b = dataclasses.replace(p.building, **{"storeys": 2, "bays_x": 2, "bays_y": 1, **building})
    return dataclasses.replace(p, building=b, shot=dataclasses.replace(p.shot, frame_start=25, frame_end=54),
                               simulation=dataclasses.replace(p.simulation, preroll_frames=24, warmup_frames=12),
                               triggers=trigger_list)


def run_to(scene, built, frame, first=None):
    physics.simulate(scene, built.events, frame, first)


def build(preset):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    built = stage.build(scene, preset)
    triggers.run(scene, built, preset)
    return scene, built


@pytest.mark.parametrize("trigger", [
    spec.ColumnRemoval(frame=FRAME),
    spec.Impact(frame=FRAME, height_m=1.5, mass_kg=40000.0),  # a loaded lorry: a 5 t ball only dents a concrete column
    spec.Shake(frame=FRAME, amplitude_m=0.3),
    spec.Charges(frame=FRAME, centers=((0.0, -2.0, 1.0),), radius_m=1.5),
], ids=lambda t: t.kind)
def test_nothing_moves_before_the_trigger_and_something_after(trigger):
    preset = small(trigger)
    scene, built = build(preset)
    run_to(scene, built, preset.shot.frame_start)
    settled = objects.rest_positions(built.fragments)
    ground = built.ground.matrix_world.translation.copy()
    run_to(scene, built, FRAME - 1, preset.shot.frame_start + 1)
    before = np.linalg.norm(objects.rest_positions(built.fragments) - settled, axis=1).max()
    assert before < 0.005, f"{trigger.kind}: a fragment moved {before:.4f} m before frame {FRAME}"
    assert (built.ground.matrix_world.translation - ground).length < 1e-6
    run_to(scene, built, FRAME + 11, FRAME)
    after = np.linalg.norm(objects.rest_positions(built.fragments) - settled, axis=1).max()
    assert after > 0.1, f"{trigger.kind}: nothing moved after frame {FRAME}"


def test_column_removal_takes_the_named_columns():
    preset = small(spec.ColumnRemoval(frame=FRAME, storey=0, columns=((1, 1),)))
    scene, built = build(preset)
    run_to(scene, built, FRAME + 4)
    dropped = {o["rubble_element"] for o in built.fragments
               if o.matrix_world.translation.z < -1.0}
    assert dropped == {"Column.0.1.1"}


MASONRY = {"material": "masonry", "walls": "masonry", "walls_from_storey": 0}


def test_the_impactor_arrives_at_the_preset_speed_and_direction():
    # Aimed to pass beside the building, so nothing slows it down over the frames measured.
    impact = spec.Impact(frame=FRAME, height_m=1.5, speed_m_s=12.0, direction=(0.6, 0.8, 0.0), offset_m=-30.0)
    scene, built = build(small(impact))
    ball = bpy.data.objects["Rubble Impactor"]
    run_to(scene, built, FRAME - spec.IMPACT_APPROACH_FRAMES)
    held = ball.matrix_world.translation.copy()
    run_to(scene, built, FRAME - spec.IMPACT_APPROACH_FRAMES - 1)
    assert (ball.matrix_world.translation - held).length == 0.0, "the ball moved before its approach"
    run_to(scene, built, FRAME - 1, FRAME - spec.IMPACT_APPROACH_FRAMES)
    track = [ball.matrix_world.translation.copy()]
    for frame in range(FRAME, FRAME + 4):
        run_to(scene, built, frame, frame)
        track.append(ball.matrix_world.translation.copy())
    assert not ball.rigid_body.kinematic, "the ball is still animated after its frame: its mass would not count"
    fps = small().shot.fps
    for a, b in zip(track, track[1:]):  # the first step is Bullet's, the rest free flight
        step = (b - a) * fps
        step.z = 0.0  # gravity pulls it down once released; the horizontal velocity is the preset's
        assert step.length == pytest.approx(12.0, rel=0.02)
        assert step.normalized().dot((0.6, 0.8, 0.0)) > 0.999
    assert track[-1].z < track[0].z, "a released ball falls"


def _displaced_mass(mass_kg: float) -> float:
    preset = small(spec.Impact(frame=FRAME, height_m=1.5, mass_kg=mass_kg), **MASONRY)
    scene, built = build(preset)
    run_to(scene, built, FRAME - 1)
    rest = objects.rest_positions(built.fragments)
    run_to(scene, built, FRAME + 6, FRAME)
    moved = np.linalg.norm(objects.rest_positions(built.fragments) - rest, axis=1) > 0.05
    return float(built.masses[moved].sum())


def test_a_heavier_impactor_breaks_more_of_the_building():
    # Same size, speed and aim; a 0.5 t ball bounces off a brick pier, a 20 t one goes through.
    light, heavy = _displaced_mass(500.0), _displaced_mass(20000.0)
    assert heavy > 5000.0 and heavy > 10 * light, f"0.5 t displaced {light:.0f} kg, 20 t {heavy:.0f} kg"


_IMPACT_BAKE = """
import sys, json, dataclasses
sys.path.insert(0, {repo!r}); sys.path.insert(0, {tests!r})
import bpy
from addon.core.destruction import triggers as spec
from addon.scene.destruction import stage
from test_destruction_triggers import MASONRY, build, small
preset = small(spec.Impact(frame=30, height_m=1.5, mass_kg=20000.0), **MASONRY)
preset = dataclasses.replace(preset, shot=dataclasses.replace(preset.shot, frame_end=36))
scene, built = build(preset)
stage.bake(scene, built)
ball = bpy.data.objects["Rubble Impactor"]
scene.frame_set(30)
arrived = list(ball.matrix_world.translation)
scene.frame_set(36)
print(json.dumps({{"arrived": arrived, "baked": [[list(row) for row in o.matrix_world] for o in built.fragments + [ball]]}}))
"""


def test_two_processes_bake_the_same_impact():
    script = _IMPACT_BAKE.format(repo=str(REPO), tests=str(REPO / "tests" / "addon"))
    runs = [json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                                      timeout=300).stdout.strip().splitlines()[-1]) for _ in range(2)]
    assert runs[0] == runs[1]
    # Its keys end where it arrives at frame 30; after that only the bake can have moved it.
    went = np.array(runs[0]["baked"][-1])[:3, 3] - np.array(runs[0]["arrived"])
    assert went[1] > 1.0, f"the baked ball went {went[1]:.2f} m after its frame: played back from its keys?"


def test_triggers_round_trip_and_bad_ones_are_named():
    data = load_preset().to_dict()
    data["triggers"] = [{"kind": "column_removal", "frame": 3, "columns": [[0, 0], [1, 0]]},
                        {"kind": "charges", "frame": 4, "centers": [[0.0, 0.0, 1.0]]}]
    preset = preset_from_dict(data)
    assert preset_from_dict(preset.to_dict()) == preset
    data["triggers"] = [{"kind": "meteor"}, {"kind": "shake", "amplitude_m": float("nan")},
                        {"kind": "column_removal", "storey": 9, "columns": [[7, 0]]},
                        {"kind": "impact", "direction": [0, 0, 0], "frame": 999}]
    with pytest.raises(PresetError) as err:
        preset_from_dict(data)
    text = str(err.value)
    for expected in ("triggers[0].kind: 'meteor' is not one of", "triggers[1].amplitude_m: nan is outside",
                     "triggers[3].direction: must not be [0, 0, 0]"):
        assert expected in text
    data["triggers"] = [{"kind": "column_removal", "storey": 9, "columns": [[7, 0]]},
                        {"kind": "impact", "frame": 999}, {"kind": "impact", "frame": 2}]
    with pytest.raises(PresetError) as err:
        preset_from_dict(data)
    text = str(err.value)
    for expected in ("triggers[0].storey: 9 does not exist", "triggers[0].columns: [7, 0] is not a column",
                     "triggers[1].frame: 999 is after shot.frame_end",
                     "triggers[2].frame: 2 is too early for an impact"):  # the pre-roll starts at frame 1
        assert expected in text
