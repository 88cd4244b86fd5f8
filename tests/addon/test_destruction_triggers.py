"""Triggers in real bpy, on a small building: nothing moves before a trigger's frame, and
each kind does what it says after it."""
import dataclasses

import bpy
import numpy as np
import pytest

from addon.core.destruction import triggers as spec
from addon.core.preset import PresetError, load_preset, preset_from_dict
from addon.scene.destruction import objects, physics, stage, triggers

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
    spec.Impact(frame=FRAME, height_m=1.5),
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
                        {"kind": "impact", "frame": 999}]
    with pytest.raises(PresetError) as err:
        preset_from_dict(data)
    text = str(err.value)
    for expected in ("triggers[0].storey: 9 does not exist", "triggers[0].columns: [7, 0] is not a column",
                     "triggers[1].frame: 999 is after shot.frame_end"):
        assert expected in text
