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
TEXTURE_PERIOD_M = 2.0  # ~27 px on screen: a slope of at most 0.4 * 2 pi / 27 ~ 0.09 per pixel
# Warping frame 3 back with frame 2's forward flow (bilinear) must give frame 2 inside each top face:
# mean absolute error < 0.015, what a flow off by 0.2 px along the texture's mean slope (0.06 px^-1)
# would cause; the 99th percentile < 0.05, the pixel filter's noise at SAMPLES samples (each pixel
# averages 4 random positions, different ones in each frame). Not warping at all errs ~0.3 on average.
WARP_MEAN_TOLERANCE = 0.015
WARP_P99_TOLERANCE = 0.05


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
        "model": {**SMALL_SHOT["model"], "width": SIZE, "height": SIZE},
        # Not denoised: the warp test reads the texture as traced (the denoiser filters each frame apart).
        "render": {"samples": SAMPLES, "denoise": False}})
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
    # A texture that moves with each cube instead of the clay, for the warp test: emission, so no
    # lighting noise, and smooth, so that bilinear sampling between pixels is accurate.
    scene.view_layers[0].material_override = None
    for cube in (right, up):
        cube.data.materials.append(texture_material())
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


def texture_material():
    """Emission (0.5 + 0.4 sin(2 pi x / TEXTURE_PERIOD_M), 0.5 + 0.4 sin(2 pi y / ...), 0.5) in
    object coordinates: the texture rides on the cube."""
    mat = bpy.data.materials.new("Moving texture")
    if mat.node_tree is None:  # Blender 4.x
        mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.clear()
    coords, split = nodes.new("ShaderNodeTexCoord"), nodes.new("ShaderNodeSeparateXYZ")
    links.new(coords.outputs["Object"], split.inputs[0])
    colour = nodes.new("ShaderNodeCombineXYZ")
    colour.inputs[2].default_value = 0.5
    for axis in (0, 1):
        scale, sine, shift = (nodes.new("ShaderNodeMath") for _ in range(3))
        scale.operation, sine.operation, shift.operation = "MULTIPLY", "SINE", "MULTIPLY_ADD"
        scale.inputs[1].default_value = 2 * np.pi / TEXTURE_PERIOD_M
        shift.inputs[1].default_value, shift.inputs[2].default_value = 0.4, 0.5
        links.new(split.outputs[axis], scale.inputs[0])
        links.new(scale.outputs[0], sine.inputs[0])
        links.new(sine.outputs[0], shift.inputs[0])
        links.new(shift.outputs[0], colour.inputs[axis])
    emission, output = nodes.new("ShaderNodeEmission"), nodes.new("ShaderNodeOutputMaterial")
    links.new(colour.outputs[0], emission.inputs["Color"])
    links.new(emission.outputs[0], output.inputs["Surface"])
    return mat


def combined(path):
    for part in OpenEXR.File(str(path)).parts:
        for name, data in part.channels.items():
            if name.endswith(".Combined"):
                return data.pixels[..., :3].astype(np.float64)
    raise AssertionError(f"no Combined in {path}")


def bilinear(image, x, y):
    """image (H, W, C) sampled at float pixel coordinates (x right, y down, pixel centres at integers)."""
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    ax, ay = (x - x0)[..., None], (y - y0)[..., None]
    at = lambda yy, xx: image[np.clip(yy, 0, image.shape[0] - 1), np.clip(xx, 0, image.shape[1] - 1)]
    return ((1 - ay) * ((1 - ax) * at(y0, x0) + ax * at(y0, x0 + 1))
            + ay * ((1 - ax) * at(y0 + 1, x0) + ax * at(y0 + 1, x0 + 1)))


def eroded(mask, pixels):
    out = mask.copy()
    for _ in range(pixels):
        out[1:-1, 1:-1] &= out[:-2, 1:-1] & out[2:, 1:-1] & out[1:-1, :-2] & out[1:-1, 2:]
        out[[0, -1]] = out[:, [0, -1]] = False
    return out


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


def test_warping_the_next_frame_back_with_the_forward_flow_reproduces_the_frame(shot):
    """I2(p) = I3(p + F2(p)) inside each cube's top face, for the cube moving right and the one
    moving up: the flow is where the surface really went (tolerances above)."""
    shot_dir, n = shot
    image = {f: combined(shot_dir / "passes" / f"{f:04d}.exr") for f in (2, 3)}
    forward = np.load(shot_dir / "control" / "flow" / "forward" / "0002.npy").astype(np.float64)
    for role in ("debris", "building"):
        inside = eroded(top_face(shot_dir, 2, role), 2)  # away from the edges, where pixels mix surfaces
        y, x = np.nonzero(inside)
        to_x, to_y = x + forward[y, x, 0], y + forward[y, x, 1]
        landing = eroded(top_face(shot_dir, 3, role), 2)
        keep = landing[np.rint(to_y).astype(int), np.rint(to_x).astype(int)]
        assert keep.sum() > 20, role
        warped = bilinear(image[3], to_x[keep], to_y[keep])
        error = np.abs(warped - image[2][y[keep], x[keep]])
        assert error.mean() < WARP_MEAN_TOLERANCE and np.percentile(error, 99) < WARP_P99_TOLERANCE, \
            (role, error.mean(), np.percentile(error, 99))
        unwarped = np.abs(image[3][y[keep], x[keep]] - image[2][y[keep], x[keep]]).mean()
        assert unwarped > 10 * WARP_MEAN_TOLERANCE, (role, unwarped)  # the texture does move: the check can fail


def test_disocclusion_marks_the_ground_the_cube_uncovers(shot, backend_python):
    shot_dir, _ = shot
    dump = shot_dir.parent / "disocclusion.npy"
    code = ("import sys, numpy as np; from PIL import Image; "
            "np.save(sys.argv[2], np.asarray(Image.open(sys.argv[1])))")
    subprocess.run([str(backend_python), "-c", code, str(shot_dir / "control" / "flow" / "disocclusion" / "0002.png"),
                    str(dump)], check=True)
    uncovered_marked = np.load(dump) == 255
    index = {f: channels(shot_dir / "passes" / f"{f:04d}.exr", ("Object Index", "IndexOB"))["X"] for f in (1, 2)}
    backward = np.load(shot_dir / "control" / "flow" / "backward" / "0002.npy")
    # The cube in frame 1, background in frame 2, and not moving (see the occlusion test on edges).
    uncovered = (index[1] == ROLE_INDEX["debris"]) & (index[2] == 0) & (np.abs(backward).max(axis=-1) < 0.01)
    rows = np.flatnonzero(top_face(shot_dir, 2, "debris").any(axis=1))
    uncovered[: rows.min()] = uncovered[rows.max() + 1 :] = False
    assert uncovered.sum() > 10 and uncovered_marked[uncovered].all(), "the ground the cube left was hidden in frame 1"
    face = top_face(shot_dir, 2, "debris")
    face[:, : np.flatnonzero(face.any(axis=0)).min() + 8] = False  # pixels that were on the top face in frame 1
    assert face.sum() > 10 and not uncovered_marked[face].any(), "the cube's own top face was visible"
