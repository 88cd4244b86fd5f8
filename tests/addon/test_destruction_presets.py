"""Every shipped destruction preset, full size: it stands for 120 frames with its triggers
removed, and with them at least half of its mass ends more than one storey below where it
stood. About 30 s per run on 2 cores, so the 8 runs are opt-in in a plain pytest run; `make test`
runs them once, on Blender 5.0 (`make test-presets`):
`RUBBLE_PRESET_TESTS=1 .venv-blender/bin/python -m pytest tests/addon/test_destruction_presets.py`.
The small-building versions of these checks run in every suite (test_destruction_scene.py,
test_destruction_triggers.py)."""
import dataclasses
import os

import bpy
import numpy as np
import pytest

from addon.core.preset import load_preset
from addon.scene.destruction import objects, physics, stage, triggers
from conftest import REPO

PRESETS = [REPO / "presets" / "default.toml", *sorted((REPO / "presets").glob("destruction_*.toml"))]
FRAMES = 120

pytestmark = pytest.mark.skipif(os.environ.get("RUBBLE_PRESET_TESTS") != "1",
                                reason="full-size presets take minutes: set RUBBLE_PRESET_TESTS=1 (make test-presets)")


def simulate(preset):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    end = preset.shot.frame_start + FRAMES
    built = stage.build(scene, preset, frame_end=end)
    triggers.run(scene, built, preset)
    physics.simulate(scene, built.events, preset.shot.frame_start)
    rest = objects.rest_positions(built.fragments)
    physics.simulate(scene, built.events, end, preset.shot.frame_start + 1)
    return built, rest, objects.rest_positions(built.fragments)


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_shipped_preset_stands_without_its_triggers(path):
    preset = dataclasses.replace(load_preset(path), triggers=())
    built, rest, end = simulate(preset)
    moved = np.linalg.norm(end - rest, axis=1).max()
    assert moved < 0.01 * preset.building.storey_height_m, f"{path.name}: a fragment moved {moved:.3f} m"


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_shipped_preset_collapses(path):
    preset = load_preset(path)
    built, rest, end = simulate(preset)
    fallen = built.masses[(rest[:, 2] - end[:, 2]) > preset.building.storey_height_m].sum() / built.masses.sum()
    assert fallen >= 0.5, f"{path.name}: only {fallen:.0%} of the mass fell more than one storey"
