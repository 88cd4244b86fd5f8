"""The `[camera]` preset section (issue 20, camera essentials): its defaults build the camera
Rubble always built, each key frames the shot as it says, bad values are refused naming the key.
Real bpy scenes, no simulation (the camera needs none)."""
import math

import bpy
import pytest
from mathutils import Vector

from addon.core.camera import CameraSettings, building_extent, camera_path
from addon.core.preset import DEFAULT_PRESET, PresetError, load_preset, preset_from_dict
from addon.scene import build
from conftest import SMALL_SHOT, write_preset


def _camera_before_issue_20(preset):
    """scene/build.py build_camera before `[camera]` (commit 550e78d), its maths verbatim: the
    (frame, location, rotation) keys, the lens and the far clip it gave every shot."""
    b = preset.building
    size = Vector((b.bays_x * b.bay_width_m, b.bays_y * b.bay_width_m, b.storeys * b.storey_height_m))
    target = Vector((0.0, 0.0, size.z * 0.4))
    distance = max(size.x, size.z) * 1.45 + size.y / 2
    start = Vector((size.x * 0.45, -distance, size.z * 0.55))
    end = target + (start - target) * 0.9
    keys = [(frame, loc, (target - loc).to_track_quat("-Z", "Y").to_euler())
            for frame, loc in ((preset.shot.frame_start, start), (preset.shot.frame_end, end))]
    return keys, 35.0, distance * 10


def _built(preset):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    return scene, build.build_camera(scene, preset)


def _keys(cam):
    """(frame, location, rotation) at each keyframe, read from the camera's F-curves."""
    fcurves = {(fc.data_path, fc.array_index): fc for fc in _fcurves(cam)}
    frames = sorted({kp.co[0] for fc in fcurves.values() for kp in fc.keyframe_points})
    return [(frame, *(tuple(fcurves[(path, i)].evaluate(frame) for i in range(3))
                      for path in ("location", "rotation_euler"))) for frame in frames]


def _fcurves(cam):
    action = cam.animation_data.action
    if hasattr(action, "fcurves"):  # Blender 4.2
        return action.fcurves
    return [fc for layer in action.layers for strip in layer.strips  # Blender 5.0: slotted actions
            for fc in strip.channelbag(action.slots[0]).fcurves]


@pytest.mark.parametrize("preset", [DEFAULT_PRESET, "small"])
def test_the_default_camera_is_the_one_rubble_always_built(preset, tmp_path):
    preset = load_preset(write_preset(tmp_path / "small.toml", **SMALL_SHOT) if preset == "small" else preset)
    assert preset.camera == CameraSettings()
    _, cam = _built(preset)
    before, lens, clip_end = _camera_before_issue_20(preset)
    assert cam.data.lens == lens and cam.data.clip_end == pytest.approx(clip_end, rel=1e-6)
    got = _keys(cam)
    assert [k[0] for k in got] == [k[0] for k in before]
    for (_, loc, rot), (_, old_loc, old_rot) in zip(got, before):
        assert loc == pytest.approx(tuple(old_loc), abs=1e-5)  # float32 rounding: 10 µm
        assert rot == pytest.approx(tuple(old_rot), abs=1e-6)


def _spherical(offset):
    """(distance, azimuth °, elevation °) of a vector from the aim point."""
    x, y, z = offset
    return math.sqrt(x * x + y * y + z * z), math.degrees(math.atan2(y, x)), math.degrees(math.atan2(z, math.hypot(x, y)))


def test_each_camera_key_frames_the_shot_as_it_says(tmp_path):
    base = load_preset(write_preset(tmp_path / "base.toml", **SMALL_SHOT))
    moved = load_preset(write_preset(tmp_path / "moved.toml", **SMALL_SHOT, camera={
        "lens_mm": 85.0, "orbit_deg": 90.0, "elevation_deg": 30.0, "distance_scale": 2.0, "push_in": 0.0}))
    _, cam = _built(base)
    (_, base_start, _), (_, base_end, _) = _keys(cam)
    scene, cam = _built(moved)
    (_, start, _), (_, end, _) = _keys(cam)
    target = Vector(camera_path(building_extent(moved.building), moved.camera).target)
    assert cam.data.lens == 85.0
    assert start == pytest.approx(end, abs=1e-6), "push_in = 0 is locked off"
    r0, azimuth0, elevation0 = _spherical(Vector(base_start) - target)
    r, azimuth, elevation = _spherical(Vector(start) - target)
    assert (r, azimuth, elevation) == pytest.approx((2 * r0, azimuth0 + 90, elevation0 + 30), abs=1e-3)
    assert (Vector(base_end) - target).length == pytest.approx(0.9 * r0, rel=1e-5), "the default pushes in 10 %"
    scene.frame_set(scene.frame_start)  # the camera looks down its -Z axis at the aim point
    looking = cam.matrix_world.to_3x3() @ Vector((0, 0, -1))
    assert looking.angle(target - cam.matrix_world.translation) < 1e-4


def _with_camera(**camera):
    data = load_preset(DEFAULT_PRESET).to_dict()
    data["camera"].update(camera)
    return data


@pytest.mark.parametrize("camera, message", [
    ({"lens_mm": float("nan")}, r"camera\.lens_mm: nan is not a finite number \(expected a float from 10\.0 to 300\.0\)"),
    ({"lens_mm": 5}, r"camera\.lens_mm: 5\.0 is below the minimum 10\.0"),
    ({"orbit_deg": "left"}, r"camera\.orbit_deg: expected float \(a number\), got str 'left'"),
    ({"push_in": 1.0}, r"camera\.push_in: 1\.0 is above the maximum 0\.9"),
    ({"fov": 40}, r"camera\.fov: unknown key"),
    ({"elevation_deg": -45.0}, r"camera\.elevation_deg: -45\.0 puts the camera -\d+\.\d\d m high at frame 25, at or "
                               r"below the ground; raise elevation_deg"),
    ({"distance_scale": 0.25, "push_in": 0.9}, r"camera\.distance_scale: 0\.25 with push_in 0\.9 puts the camera "
                                               r"inside the building \(12 x 8 x 19\.2 m\) by the end of the shot"),
])
def test_a_bad_camera_is_refused_naming_the_key(camera, message):
    with pytest.raises(PresetError, match=message) as caught:
        preset_from_dict(_with_camera(**camera), source="test")
    assert len(caught.value.problems) == 1, caught.value.problems


def test_a_preset_without_a_camera_section_keeps_the_default_camera():
    data = load_preset(DEFAULT_PRESET).to_dict()
    del data["camera"]
    assert preset_from_dict(data).camera == CameraSettings()
