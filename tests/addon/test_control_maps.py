"""Depth and normal control maps from real Cycles passes, against known geometry.

A rolled, yawed camera moves between frames 1 and 2. Parented to it, facing it: a plane at
PLANE_M and, off to the left, a wall at WALL_M (the shot's farthest surface); the rest of the
right edge is sky. A sphere stands in the world, on the camera's axis at frame 2, SPHERE_M away.
"""
import json
import math
import subprocess
import tomllib

import bpy
import numpy as np
import OpenEXR
import pytest
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Matrix, Vector

from addon.core.preset import load_preset
from addon.core.shot_manifest import build_manifest
from addon.scene import bake, passes
from conftest import REPO, SMALL_SHOT, write_preset

W, H = 96, 64
PLANE_M, WALL_M, SPHERE_M, RADIUS_M = 20.0, 40.0, 10.0, 1.0
NORMAL_TOLERANCE = 0.06  # of the map's 0..1 colour: smooth-shaded 64-segment sphere, 8-bit map


def plane(name, size, camera, local):
    mesh = bpy.data.meshes.new(name)
    h = size / 2
    mesh.from_pydata([(-h, -h, 0), (h, -h, 0), (h, h, 0), (-h, h, 0)], [], [(0, 1, 2, 3)])  # normal +z: faces the camera
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.parent = camera
    obj.location = local
    return obj


def read_depth(path):
    for part in OpenEXR.File(str(path)).parts:
        for name, data in part.channels.items():
            if name.endswith("Depth.Z"):
                return data.pixels
    raise AssertionError(f"no Depth.Z in {path}")


@pytest.fixture(scope="module")
def shot(tmp_path_factory, backend_python):
    out = tmp_path_factory.mktemp("maps") / "shot"
    preset_path = write_preset(out.parent / "p.toml", **{
        **SMALL_SHOT, "shot": {"frame_start": 1, "frame_end": 2, "resolution": [W, H]}, "render": {"samples": 1}})
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 2
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    for frame, x, yaw in ((1, -0.5, 4.0), (2, 0.0, 10.0)):
        cam.location = (x, -12.0, 2.0)
        cam.rotation_euler = (math.radians(90), math.radians(25), math.radians(yaw))  # looks along +Y, rolled 25°
        cam.keyframe_insert("location", frame=frame)
        cam.keyframe_insert("rotation_euler", frame=frame)
    plane("Plane", 8.0, cam, (0.0, 0.0, -PLANE_M))
    plane("Wall", 16.0, cam, (-6.0, 0.0, -WALL_M))
    scene.frame_set(2)
    axis = cam.matrix_world.to_quaternion() @ Vector((0.0, 0.0, -1.0))
    centre = cam.matrix_world.translation + SPHERE_M * axis
    bpy.ops.mesh.primitive_uv_sphere_add(segments=64, ring_count=32, radius=RADIUS_M, location=centre)
    bpy.ops.object.shade_smooth()
    passes.configure(scene, load_preset(preset_path))
    for frame in (1, 2):
        passes.render_frame(scene, frame, out / "passes" / f"{frame:04d}.exr")
    scene.frame_set(2)
    cameras = dict(bake.camera_records(scene))
    manifest = build_manifest(tomllib.loads(preset_path.read_text()), cameras, {"rubble": "test", "blender": bpy.app.version_string})
    (out / "shot.json").write_text(json.dumps(manifest))
    run = subprocess.run([str(backend_python), "-m", "inference", "control", str(out)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    dump = out.parent / "maps.npz"
    code = ("import sys, numpy as np; from PIL import Image; from pathlib import Path; c = Path(sys.argv[1]) / 'control'; "
            "np.savez(sys.argv[2], depth=np.asarray(Image.open(c / 'depth' / '0002.png')), "
            "normal=np.asarray(Image.open(c / 'normal' / '0002.png')))")
    subprocess.run([str(backend_python), "-c", code, str(out), str(dump)], check=True)
    scene.frame_set(2)
    u, v, _ = world_to_camera_view(scene, cam, centre)
    # The sphere's radius in pixels: focal length in pixels (sensor fit: width) * r / distance.
    radius_px = cam.data.lens / cam.data.sensor_width * W * RADIUS_M / SPHERE_M
    return out, dict(np.load(dump)), (u * W, (1 - v) * H), radius_px


def test_plane_facing_the_camera_has_its_disparity_and_nearer_is_brighter(shot):
    shot_dir, maps, (cx, cy), radius = shot
    depth = read_depth(shot_dir / "passes" / "0002.exr")
    stats = json.loads((shot_dir / "control" / "stats.json").read_text())["depth"]
    # The wall is the farthest surface and covers more than 1% of the pixels: the 1st percentile.
    assert stats["disparity_low"] == pytest.approx(1 / WALL_M, rel=1e-5)
    on_plane = np.abs(depth - PLANE_M) < 1e-3
    assert on_plane.sum() > 200
    expected = round((1 / PLANE_M - stats["disparity_low"]) / (stats["disparity_high"] - stats["disparity_low"]) * 65535)
    assert 0 < expected < 65535
    assert np.abs(maps["depth"][on_plane].astype(int) - expected).max() <= 1
    assert (maps["depth"][np.abs(depth - WALL_M) < 1e-3] == 0).all(), "the farthest surface maps to 0"
    sphere = depth < PLANE_M - 1
    assert sphere.sum() > 100 and maps["depth"][sphere].min() > expected, "nearer is brighter"
    sky = depth > 1e9
    assert sky.sum() > 50 and (maps["depth"][sky] == 0).all(), "background is black"


def test_sphere_normals_follow_the_contract_convention(shot):
    """docs/contract.md: camera space, ((-x + 1)/2, (y + 1)/2, (z + 1)/2): centre (0.5, 0.5, 1),
    the right edge red < 0.5, the top edge green > 0.5; the camera's roll and yaw do not show."""
    _, maps, (cx, cy), radius = shot
    normal = maps["normal"].astype(np.float64) / 255.0

    def at(dx, dy):  # dx right, dy up, in sphere radii
        return normal[int(round(cy - dy * radius)), int(round(cx + dx * radius))]

    assert at(0, 0) == pytest.approx((0.5, 0.5, 1.0), abs=NORMAL_TOLERANCE)
    for dx, dy in ((0.7, 0.0), (0.0, 0.7), (-0.7, 0.0), (0.0, -0.7), (0.5, 0.5)):
        # A sphere's normal at (dx, dy) of its radius from the centre, seen head on: (dx, dy, sqrt(1 - dx² - dy²)).
        n = np.array([dx, dy, math.sqrt(1 - dx * dx - dy * dy)])
        assert at(dx, dy) == pytest.approx(((1 - n[0]) / 2, (n[1] + 1) / 2, (n[2] + 1) / 2), abs=NORMAL_TOLERANCE), (dx, dy)
    assert at(0.7, 0)[0] < 0.5 and at(0, 0.7)[1] > 0.5
