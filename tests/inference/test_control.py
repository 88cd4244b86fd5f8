"""Control-map conventions, checked on files the backend writes from synthetic Blender-layout passes."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import layout, make_shot, run_backend

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
