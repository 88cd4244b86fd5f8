"""Flow and role masks from real Cycles passes: the backend's `control` stage on a shot rendered
here. One cube slides +x on screen, another +y in the world (up on screen), under a camera
looking straight down; the Vector pass's sign convention is pinned in test_passes.py."""
import json
import subprocess
import tomllib

import bpy
import numpy as np
import OpenEXR
import pytest

from addon.core.preset import load_preset
from addon.core.shot_manifest import ROLE_INDEX, build_manifest
from addon.scene import bake, build, passes
from conftest import REPO, SMALL_SHOT, write_preset

SPEED_M = 0.5        # each cube's motion per frame
CAMERA_HEIGHT = 10.0
SIZE = 96            # pixels, square
SAMPLES = 4          # more than one: an anti-aliased Object Index pass would show in-between values
FLOW_TOLERANCE_PX = 0.5


def channels(path, name):
    found = {}
    for part in OpenEXR.File(str(path)).parts:
        for channel, data in part.channels.items():
            layer, _, component = channel.partition(".")[2].rpartition(".")
            if layer in name:
                found[component] = data.pixels
    return found


@pytest.fixture(scope="module")
def shot(tmp_path_factory, backend_python):
    out = tmp_path_factory.mktemp("flow") / "shot"
    preset_path = write_preset(out.parent / "p.toml", **{
        **SMALL_SHOT, "shot": {"frame_start": 1, "frame_end": 3, "resolution": [SIZE, SIZE]},
        "render": {"samples": SAMPLES}})
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 3
    coll = bpy.data.collections.new("Test")
    scene.collection.children.link(coll)
    right = build.box("Right", (1, 1, 1), (0, 0, 0), coll, "debris")
    up = build.box("Up", (1, 1, 1), (0, 0, 0), coll, "building")
    for frame in (1, 2, 3):
        right.location = (-1.5 + (frame - 2) * SPEED_M, -1.0, 0.0)
        up.location = (1.5, (frame - 2) * SPEED_M, 0.0)
        right.keyframe_insert("location", frame=frame)
        up.keyframe_insert("location", frame=frame)
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    cam.location = (0, 0, CAMERA_HEIGHT)  # rotation 0: looks down -Z, +X right, +Y up on screen
    scene.collection.objects.link(cam)
    scene.camera = cam
    passes.configure(scene, load_preset(preset_path))
    for frame in (1, 2, 3):
        passes.render_frame(scene, frame, out / "passes" / f"{frame:04d}.exr")
    cameras = dict(bake.camera_records(scene))
    manifest = build_manifest(tomllib.loads(preset_path.read_text()), cameras, {"rubble": "test", "blender": bpy.app.version_string})
    (out / "shot.json").write_text(json.dumps(manifest))
    run = subprocess.run([str(backend_python), "-m", "inference", "control", str(out)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    # Screen pixels per metre at the cubes' top faces (0.5 m above their centres).
    px_per_m = SIZE / (2 * (CAMERA_HEIGHT - 0.5) * np.tan(cam.data.angle / 2))
    return out, SPEED_M * px_per_m


def top_face(shot_dir, frame, role):
    """Pixels of the role's cube top face (planar depth 9.5) in `frame`'s passes."""
    path = shot_dir / "passes" / f"{frame:04d}.exr"
    index = channels(path, ("Object Index", "IndexOB"))["X"]
    depth = channels(path, ("Depth",))["Z"]
    return (index == ROLE_INDEX[role]) & (np.abs(depth - (CAMERA_HEIGHT - 0.5)) < 1e-3)


def test_forward_and_backward_flow_of_a_cube_moving_right(shot):
    shot_dir, n = shot
    face = top_face(shot_dir, 2, "debris")
    assert face.sum() > 20
    forward = np.load(shot_dir / "control" / "flow" / "forward" / "0002.npy")
    backward = np.load(shot_dir / "control" / "flow" / "backward" / "0002.npy")
    assert forward.shape == (SIZE, SIZE, 2) and forward.dtype == np.float32
    assert np.abs(forward[face] - (n, 0.0)).max() < FLOW_TOLERANCE_PX, (n, forward[face].mean(axis=0))
    assert np.abs(backward[face] - (-n, 0.0)).max() < FLOW_TOLERANCE_PX, (n, backward[face].mean(axis=0))


def test_a_cube_moving_up_on_screen_has_negative_y_flow(shot):
    shot_dir, n = shot
    face = top_face(shot_dir, 2, "building")
    assert face.sum() > 20
    forward = np.load(shot_dir / "control" / "flow" / "forward" / "0002.npy")
    backward = np.load(shot_dir / "control" / "flow" / "backward" / "0002.npy")
    assert np.abs(forward[face] - (0.0, -n)).max() < FLOW_TOLERANCE_PX, (n, forward[face].mean(axis=0))
    assert np.abs(backward[face] - (0.0, n)).max() < FLOW_TOLERANCE_PX


def test_object_index_is_not_anti_aliased_and_masks_cover_exactly_their_objects(shot, backend_python):
    shot_dir, _ = shot
    index = channels(shot_dir / "passes" / "0002.exr", ("Object Index", "IndexOB"))["X"]
    # With SAMPLES samples a filtered pass would blend indices at the cubes' edges.
    assert set(np.unique(index).tolist()) == {0.0, ROLE_INDEX["building"], ROLE_INDEX["debris"]}
    dump = shot_dir.parent / "masks.npz"
    code = ("import sys, numpy as np; from PIL import Image; from pathlib import Path; c = Path(sys.argv[1]) / 'control' / 'mask'; "
            "np.savez(sys.argv[2], **{d.name: np.asarray(Image.open(d / '0002.png')) for d in c.iterdir()})")
    subprocess.run([str(backend_python), "-c", code, str(shot_dir), str(dump)], check=True)
    masks = dict(np.load(dump))
    for role, value in ROLE_INDEX.items():
        assert np.array_equal(masks[role] == 255, index == value), role


def test_occlusion_marks_the_ground_the_cube_moves_onto(shot, backend_python):
    shot_dir, _ = shot
    dump = shot_dir.parent / "occlusion.npy"  # PIL lives in the backend's environment
    code = ("import sys, numpy as np; from PIL import Image; "
            "np.save(sys.argv[2], np.asarray(Image.open(sys.argv[1])))")
    subprocess.run([str(backend_python), "-c", code, str(shot_dir / "control" / "flow" / "occlusion" / "0002.png"),
                    str(dump)], check=True)
    occluded = np.load(dump) == 255
    index = {f: channels(shot_dir / "passes" / f"{f:04d}.exr", ("Object Index", "IndexOB"))["X"] for f in (2, 3)}
    forward = np.load(shot_dir / "control" / "flow" / "forward" / "0002.npy")
    # Background in frame 2, the cube in frame 3. The Vector pass is averaged over the samples
    # while the Object Index pass holds one sample's object, so at the cube's edge a pixel indexed
    # as background can carry most of the cube's motion: keep the pixels that do not move.
    covered = (index[2] == 0) & (index[3] == ROLE_INDEX["debris"]) & (np.abs(forward).max(axis=-1) < 0.01)
    rows = np.flatnonzero(top_face(shot_dir, 2, "debris").any(axis=1))
    covered[: rows.min()] = covered[rows.max() + 1 :] = False  # beside the top face only: no side faces
    assert covered.sum() > 10 and occluded[covered].all(), "the background the cube moves onto is hidden in frame 3"
    face = top_face(shot_dir, 2, "debris")
    face[:, np.flatnonzero(face.any(axis=0)).max() - 7 :] = False  # pixels that stay on the top face
    assert face.sum() > 10 and not occluded[face].any(), "the cube's own top face stays visible"
