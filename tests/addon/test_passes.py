"""The passes as Blender writes them, checked against the conventions in docs/contract.md.

A cube slides +x under a camera looking straight down: depth is planar camera z,
the background is ~1e10, normals are world space, and the Vector pass's sign is pinned
(Cycles takes the previous/next positions, so key interpolation does not matter).
"""
import bpy
import numpy as np
import OpenEXR
import pytest

from addon.core import pass_files
from addon.core.preset import load_preset
from addon.scene import build, passes
from conftest import SMALL_SHOT, write_preset

SPEED_M = 0.5        # cube motion per frame, world +x
CAMERA_HEIGHT = 10.0


def read_pass(path, *names):
    """Channels of one pass, matched by name as the backend does (never by part order)."""
    found = {}
    name = names[0]
    for part in OpenEXR.File(str(path)).parts:
        for channel, data in part.channels.items():
            layer, _, component = channel.partition(".")[2].rpartition(".")
            if channel.endswith(".Combined") and name == "Combined":
                return data.pixels
            if layer in names:
                found[component] = data.pixels
    assert found, f"pass {name} not in {path}"
    return found


@pytest.fixture(scope="module")
def sliding_cube(tmp_path_factory):
    out = tmp_path_factory.mktemp("passes")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    preset = load_preset(write_preset(out / "p.toml", **SMALL_SHOT))
    coll = bpy.data.collections.new("Test")
    scene.collection.children.link(coll)
    cube = build.box("Cube", (2, 2, 2), (0, 0, 0), coll, "debris")
    for frame in (1, 2, 3):
        cube.location.x = (frame - 2) * SPEED_M
        cube.keyframe_insert("location", frame=frame)
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    cam.location = (0, 0, CAMERA_HEIGHT)  # rotation 0: looks down -Z, +X right, +Y up on screen
    scene.collection.objects.link(cam)
    scene.camera = cam
    passes.configure(scene, preset)
    scene.cycles.samples = 1
    scene.render.resolution_x = scene.render.resolution_y = 64
    passes.render_frame(scene, 2, out / "0002.exr")
    # Screen pixels per metre at the cube's top face (1 m below its centre, 9 m from the camera).
    px_per_m = 64 / (2 * (CAMERA_HEIGHT - 1.0) * np.tan(cam.data.angle / 2))
    return out / "0002.exr", px_per_m, cube.pass_index


def test_depth_is_planar_camera_z_with_far_background(sliding_cube):
    path, _, _ = sliding_cube
    z = read_pass(path, "Depth")["Z"]
    assert z[32, 32] == pytest.approx(CAMERA_HEIGHT - 1.0, abs=1e-3)  # cube top at z=1
    assert z[0, 0] > 1e9, "background depth should be ~1e10"


def test_normals_are_world_space(sliding_cube):
    n = read_pass(sliding_cube[0], "Normal")
    assert (n["X"][32, 32], n["Y"][32, 32], n["Z"][32, 32]) == pytest.approx((0, 0, 1), abs=1e-3)


def test_object_index_pass(sliding_cube):
    index = read_pass(sliding_cube[0], "Object Index", "IndexOB")["X"]  # 5.0 name, 4.x name
    assert index[32, 32] == sliding_cube[2] and index[0, 0] == 0


def test_vector_sign_for_motion_to_screen_right(sliding_cube):
    path, px_per_m, _ = sliding_cube
    v = read_pass(path, "Vector")
    expected = SPEED_M * px_per_m
    # XY: motion towards the previous frame (the cube came from the left: negative x).
    assert v["X"][32, 32] == pytest.approx(-expected, rel=0.05)
    # ZW: minus the motion towards the next frame (it goes right: +x, so negative).
    assert v["Z"][32, 32] == pytest.approx(-expected, rel=0.05)
    assert abs(v["Y"][32, 32]) < 0.05 and abs(v["W"][32, 32]) < 0.05


def test_data_passes_are_float32_and_only_the_clay_is_half_float_uncompressed(sliding_cube):
    """The EXR settings bench/bench_control.py measured: uncompressed by default ([render]
    pass_codec); half float only for Combined, whatever color_depth says Blender keeps the data
    passes float32."""
    dtypes = {}
    for part in OpenEXR.File(str(sliding_cube[0])).parts:
        assert part.header["compression"] == OpenEXR.NO_COMPRESSION, part.name()
        for channel, data in part.channels.items():
            dtypes[channel.split(".", 1)[1]] = data.pixels.dtype
    assert dtypes.pop("Combined") == np.float16
    assert dtypes.pop("Noisy Image") == np.float16  # the clay before denoising, a colour pass too
    assert set(dtypes.values()) == {np.dtype(np.float32)}, dtypes
    assert {"Depth.Z", "Normal.X", "Vector.W"} <= dtypes.keys()
    # What the passes stage's disk check counts a frame at: the file, to a few kB (the headers; 4.x
    # writes one part, so fewer scanline tables than counted).
    assert abs(sliding_cube[0].stat().st_size - pass_files.frame_bytes(64, 64, True, "none")) <= 16_000


@pytest.mark.parametrize("codec, compression", [("rle", OpenEXR.RLE_COMPRESSION), ("zip", OpenEXR.ZIP_COMPRESSION)])
def test_pass_codec_picks_the_passes_compression_and_keeps_the_pixels(sliding_cube, tmp_path, codec, compression):
    """[render] pass_codec: another lossless codec, the same channels and pixels as the default's."""
    scene = bpy.context.scene
    preset = load_preset(write_preset(tmp_path / "p.toml", **{**SMALL_SHOT, "render": {"pass_codec": codec}}))
    passes.configure(scene, preset)
    scene.cycles.samples = 1
    scene.render.resolution_x = scene.render.resolution_y = 64
    passes.render_frame(scene, 2, tmp_path / "0002.exr")
    (pixels, headers), (default, _) = _exr(tmp_path / "0002.exr"), _exr(sliding_cube[0])
    assert {header["compression"] for header in headers} == {compression}
    # Compressed, the file is smaller than uncompressed (the disk check's bound for "none").
    assert (tmp_path / "0002.exr").stat().st_size < pass_files.frame_bytes(64, 64, True, "none")
    assert pixels.keys() == default.keys()
    for name in pixels:
        assert pixels[name].dtype == default[name].dtype and np.array_equal(pixels[name], default[name]), name


def _exr(path):
    """{channel name without the view layer: pixels} of every part (one part per pass in 5.0,
    a single part in 4.2), and the parts' headers."""
    parts = OpenEXR.File(str(path)).parts
    return ({name.split(".", 1)[1]: data.pixels for part in parts for name, data in part.channels.items()},
            [part.header for part in parts])


@pytest.fixture(scope="module")
def lit_boxes(tmp_path_factory):
    """Two boxes on the ground under the shot's sun and sky, rendered with the default preset's
    [render] settings, with denoising off, and with 64 samples (the reference clay)."""
    import dataclasses

    out = tmp_path_factory.mktemp("lit")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    preset = load_preset()
    coll = bpy.data.collections.new("Test")
    scene.collection.children.link(coll)
    build.box("Ground", (20, 20, 0.2), (0, 0, -0.1), coll, "ground")
    build.box("Block", (2, 2, 2), (-1, 0, 1), coll, "building")
    build.box("Slab", (3, 1, 0.5), (1.5, 1, 0.25), coll, "debris")
    build.build_lighting(scene)
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    cam.location, cam.rotation_euler = (0, -9, 6), (0.98, 0, 0)
    scene.collection.objects.link(cam)
    scene.camera = cam
    renders = {}
    for name, render in (("default", preset.render),
                         ("raw", dataclasses.replace(preset.render, denoise=False)),
                         ("reference", dataclasses.replace(preset.render, denoise=False, samples=64))):
        passes.configure(scene, dataclasses.replace(preset, render=render))
        scene.render.resolution_x, scene.render.resolution_y = 96, 64
        passes.render_frame(scene, 1, out / f"{name}.exr")
        renders[name] = _exr(out / f"{name}.exr")
    return renders


def test_default_render_traces_one_sample_and_denoises_only_the_clay(lit_boxes):
    """Issue 16: the data passes need one sample, only the clay more; one sample denoised by
    OpenImageDenoise is the default. Denoising must leave Depth, Normal, Vector and Object Index
    exactly as traced, keep the traced clay as "Noisy Image", and bring the clay at least twice
    as close (RMSE) to a 64-sample clay as the one raw sample is."""
    (default, headers), (raw, _) = lit_boxes["default"], lit_boxes["raw"]
    reference = lit_boxes["reference"][0]
    # Cycles' render statistics in the EXR header (the first part's in 5.0: Combined).
    assert {header["cycles.ViewLayer.samples"] for header in headers if "cycles.ViewLayer.samples" in header} == {"1"}
    data = {name for name in raw if name != "Combined"}
    assert {"Depth.Z", "Normal.X", "Vector.X", "Object Index.X" if "Object Index.X" in raw else "IndexOB.X"} <= data
    for name in data:
        assert np.array_equal(default[name], raw[name]), f"denoising changed the data pass {name}"
    assert np.array_equal(default["Noisy Image"], raw["Combined"])

    def rmse(clay):
        return float(np.sqrt(np.mean((clay[..., :3].astype(np.float64) - reference["Combined"][..., :3]) ** 2)))

    assert rmse(raw["Combined"]) > 0.01, "the scene is too evenly lit to show sampling noise"
    assert rmse(default["Combined"]) < 0.5 * rmse(raw["Combined"]), (rmse(default["Combined"]), rmse(raw["Combined"]))


def test_a_saved_render_is_the_file_write_still_wrote(tmp_path, lit_boxes):
    """render_frame saves the render result instead of rendering with write_still (cheaper per
    frame); the file must stay the same: parts, channels, dtypes, codec and pixels."""
    scene = bpy.context.scene
    scene.render.filepath = str(tmp_path / "still.exr")
    scene.render.use_file_extension = False
    with bpy.context.temp_override(scene=scene):
        bpy.ops.render.render(write_still=True)
    (still, still_headers), (saved, saved_headers) = _exr(tmp_path / "still.exr"), lit_boxes["reference"]
    assert still.keys() == saved.keys() and len(still_headers) == len(saved_headers)
    for name in still:
        assert still[name].dtype == saved[name].dtype and np.array_equal(still[name], saved[name]), name
    for still_header, saved_header in zip(still_headers, saved_headers):
        assert still_header["compression"] == saved_header["compression"] == OpenEXR.NO_COMPRESSION
