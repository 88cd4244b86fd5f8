"""Control-map conventions, checked on files the backend writes from synthetic Blender-layout passes."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import add_near_object, layout, make_shot, run_backend

@pytest.fixture(scope="module")
def derived(tmp_path_factory) -> Path:
    shot = make_shot(tmp_path_factory.mktemp("control") / "shot")
    run = run_backend("control", str(shot))
    assert run.returncode == 0, run.stderr
    return shot


def load(shot: Path, kind: str, frame: int) -> Image.Image:
    return Image.open(shot / "control" / kind / f"{frame:04d}.png")


def test_depth_is_16_bit_disparity_near_bright_background_black(derived):
    image = load(derived, "depth", 2)
    assert image.mode == "I;16", f"depth must be a 16-bit grey PNG, got mode {image.mode}"
    depth = np.asarray(image, dtype=np.float64)
    at = layout(*image.size)
    sky = depth[at.sky_rows]
    box = depth[at.box_rows, at.box_front_cols]
    wall = depth[at.box_rows, : at.box_front_cols.start]
    nearest_ground = depth[-1]
    assert sky.max() == 0, "background (depth ~1e10) must be black"
    assert box.mean() > wall.mean(), "the box (z=8) is nearer than the wall (z=60) so must be brighter"
    assert nearest_ground.mean() == 65535, "the nearest surface in the shot is at the top of the range"


def test_depth_brightens_as_the_box_approaches(derived):
    at = layout(64, 48)
    boxes = [np.asarray(load(derived, "depth", f), np.float64)[at.box_rows, at.box_front_cols].mean() for f in (1, 4)]
    assert boxes[1] > boxes[0], f"frame 4's box is nearer than frame 1's; brightness {boxes}"


def test_chunk_uses_the_whole_shot_normalisation(derived, tmp_path):
    chunk = tmp_path / "chunk"
    shutil.copytree(derived / "passes", chunk / "passes")
    shutil.copy(derived / "shot.json", chunk / "shot.json")
    run = run_backend("control", str(chunk), "--frames", "2-3")
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (chunk / "control" / "depth").iterdir()) == ["0002.png", "0003.png"]
    for frame in (2, 3):
        assert np.array_equal(np.asarray(load(chunk, "depth", frame)), np.asarray(load(derived, "depth", frame)))
    # Flow, occlusion (frame 3's needs frame 4, outside the chunk) and masks too, byte for byte.
    made = sorted(p.relative_to(chunk) for p in (chunk / "control").rglob("*") if p.is_file() and p.suffix != ".json")
    assert len(made) == 2 * 9 and all(p.stem in ("0002", "0003") for p in made), made
    for path in made:
        assert (chunk / path).read_bytes() == (derived / path).read_bytes(), path
    whole = json.loads((derived / "control" / "stats.json").read_text())
    part = json.loads((chunk / "control" / "stats.json").read_text())
    assert part["depth"] == whole["depth"]


def test_rerun_skips_frames_already_derived(derived):
    before = {p: p.stat().st_mtime_ns for p in (derived / "control").rglob("*.png")}
    run = run_backend("control", str(derived))
    assert run.returncode == 0, run.stderr
    assert run.of_type("result")[0]["outputs"] == [], "nothing changed, so nothing is rewritten"
    assert before == {p: p.stat().st_mtime_ns for p in (derived / "control").rglob("*.png")}


def test_normals_are_camera_space_normalbae(derived):
    normal = np.asarray(load(derived, "normal", 1), dtype=np.float64) / 255.0
    at = layout(64, 48)
    facing = normal[at.box_rows, at.box_front_cols].reshape(-1, 3).mean(axis=0)
    right = normal[at.box_rows, at.box_side_cols].reshape(-1, 3).mean(axis=0)
    up = normal[at.ground_rows].reshape(-1, 3).mean(axis=0)
    assert np.allclose(facing, (0.5, 0.5, 1.0), atol=0.01), f"a normal facing the camera is blue, got {facing}"
    assert right[0] < 0.1, f"normalbae flips red: a camera-right normal has red near 0, got {right}"
    assert np.allclose(up, (0.5, 1.0, 0.5), atol=0.01), f"world up is camera up for this camera (green), got {up}"


def test_clay_is_srgb_preview(derived):
    clay = np.asarray(load(derived, "clay", 1))
    assert clay.shape == (48, 64, 3) and clay.dtype == np.uint8
    at = layout(64, 48)
    # The box front's linear value is 0.6 * 0.6 = 0.36 -> sRGB 0.63 -> 161, not 92 (linear).
    assert abs(int(clay[at.box_rows, at.box_front_cols].mean()) - 161) <= 1


def test_background_normal_faces_the_camera(derived):
    # A unit normal, not grey: the MiDaS normal annotator (controlnet_aux/midas) sets its
    # background to x = y = 0, i.e. the flat "facing the camera" normal, RGB (128, 128, 255).
    normal = np.asarray(load(derived, "normal", 1))
    sky = normal[layout(64, 48).sky_rows].reshape(-1, 3)
    assert (sky == (128, 128, 255)).all(), f"background normal colours: {np.unique(sky, axis=0)}"


@pytest.fixture(scope="module")
def changing_extremes(tmp_path_factory) -> Path:
    """A shot whose nearest depth changes: a near object (z = 1) only in frames 3 and 4."""
    shot = make_shot(tmp_path_factory.mktemp("extremes") / "shot")
    add_near_object(shot, frames=(3, 4), depth=1.0)
    run = run_backend("control", str(shot))
    assert run.returncode == 0, run.stderr
    return shot


def test_static_surface_keeps_its_depth_value_in_every_frame(changing_extremes):
    at = layout(64, 48)
    ground = [np.asarray(load(changing_extremes, "depth", f))[at.ground_rows] for f in (1, 2, 3, 4)]
    near = np.asarray(load(changing_extremes, "depth", 3))[at.sky_rows, :16]
    assert (near == 65535).all(), "the near object is the nearest thing in the shot"
    assert 0 < ground[0].min() and ground[0].max() < 65535, "the ground lies inside the shot's range"
    for frame, values in zip((2, 3, 4), ground[1:]):
        assert np.array_equal(values, ground[0]), f"the static ground changed brightness in frame {frame}"


@pytest.mark.parametrize("chunk", ["1-2", "3-4"])
def test_chunks_keep_the_shot_normalisation_when_extremes_change(changing_extremes, tmp_path, chunk):
    copy = tmp_path / "chunk"
    shutil.copytree(changing_extremes / "passes", copy / "passes")
    shutil.copy(changing_extremes / "shot.json", copy / "shot.json")
    run = run_backend("control", str(copy), "--frames", chunk)
    assert run.returncode == 0, run.stderr
    first, last = map(int, chunk.split("-"))
    for frame in range(first, last + 1):
        assert np.array_equal(np.asarray(load(copy, "depth", frame)), np.asarray(load(changing_extremes, "depth", frame)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_percentiles_match_numpy_within_the_stated_bound(seed):
    from inference import control

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(5):  # continuous depths (no ties), a flat wall, a few near outliers, sky
        depth = rng.lognormal(mean=rng.uniform(0.5, 4.0), sigma=rng.uniform(0.1, 1.5), size=(60, 80))
        depth[:10] = 1e10
        depth[10:20, :40] = 60.0
        depth[20, :3] = rng.uniform(0.05, 0.2, size=3)
        frames.append(depth.astype(np.float32))
    histogram = control.DisparityHistogram()
    for depth in frames:
        histogram.add(depth)
    values = np.concatenate([control.disparity(d)[d < control.BACKGROUND_DEPTH] for d in frames]).astype(np.float64)
    for q in (0.0, 0.5, 1.0, 37.3, 50.0, 99.0, 99.9, 100.0):
        (streamed,) = histogram.percentiles((q,))
        exact = np.percentile(values, q)
        assert abs(streamed - exact) <= control.PERCENTILE_RELATIVE_ERROR * exact, (q, streamed, exact)


def test_worker_processes_write_the_same_maps_as_one_process(tmp_path):
    """Frames split over three worker processes (each reading the next run's first frame for its
    last occlusion, histograms merged) give byte-identical maps and stats to one process, and
    progress counts every frame once."""
    shots = {}
    for workers in ("1", "3"):
        shot = make_shot(tmp_path / workers / "shot", frames=7)
        run = run_backend("control", str(shot), env={"RUBBLE_CONTROL_WORKERS": workers})
        assert run.returncode == 0, run.stderr
        for stage in ("control_stats", "control"):
            done = [e["done"] for e in run.of_type("progress") if e["stage"] == stage]
            assert sorted(done) == list(range(1, 8)), (stage, done)
        shots[workers] = shot / "control"
    made = sorted(p.relative_to(shots["1"]) for p in shots["1"].rglob("*") if p.is_file())
    assert made == sorted(p.relative_to(shots["3"]) for p in shots["3"].rglob("*") if p.is_file())
    assert len(made) > 7 * 8
    for path in made:
        assert (shots["1"] / path).read_bytes() == (shots["3"] / path).read_bytes(), path


def test_a_bad_pass_in_a_worker_is_reported_with_its_frame(tmp_path):
    shot = make_shot(tmp_path / "shot", frames=6)
    (shot / "passes" / "0005.exr").write_bytes((shot / "passes" / "0005.exr").read_bytes()[:2000])
    run = run_backend("control", str(shot), env={"RUBBLE_CONTROL_WORKERS": "2"})
    assert run.returncode == 1
    error = run.of_type("error")[0]
    assert error["code"] == "corrupt_pass" and "frame 5" in error["message"], error
