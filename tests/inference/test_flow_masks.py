"""Flow, occlusion and role masks written by `python -m inference control` from synthetic passes
(Blender 5.0's layout, tests/inference/conftest.py); the signs are proven on real renders in
tests/addon/test_flow_and_masks.py."""

import json
from pathlib import Path

import numpy as np
import OpenEXR
from PIL import Image

from conftest import layout, make_shot, rewrite_channels, run_backend

W, H = 64, 48


def set_motion(shot: Path, frame: int, box_cols: slice, vector: tuple[float, float, float, float]) -> None:
    """Frame `frame`: object 1 only in `box_cols` (rows of the box), moving with Vector `vector`."""
    rows = layout(W, H).box_rows

    def change(channels):
        index = channels["ViewLayer.Object Index.X"]
        index[rows] = 0
        index[rows, box_cols] = 1
        for i, c in enumerate("XYZW"):
            v = channels[f"ViewLayer.Vector.{c}"]
            v[:] = 0
            v[index == 1] = vector[i]

    rewrite_channels(shot / "passes" / f"{frame:04d}.exr", change)


def derive(shot: Path) -> None:
    run = run_backend("control", str(shot))
    assert run.returncode == 0, run.stderr


def flow(shot: Path, direction: str, frame: int) -> np.ndarray:
    return np.load(shot / "control" / "flow" / direction / f"{frame:04d}.npy")


def png(shot: Path, *parts: str) -> np.ndarray:
    return np.asarray(Image.open(shot.joinpath("control", *parts)))


def test_flow_files_are_pixels_x_right_y_down(tmp_path):
    shot = make_shot(tmp_path / "shot", frames=3)
    # Vector (pixels, y up): XY towards the previous frame, ZW minus towards the next frame.
    set_motion(shot, 1, slice(16, 32), (-3.0, 0.0, -3.0, 0.0))  # moving right 3 px a frame
    set_motion(shot, 2, slice(16, 32), (0.0, -2.0, 0.0, -2.0))  # moving up 2 px a frame
    derive(shot)
    rows = layout(W, H).box_rows
    for direction in ("forward", "backward"):
        f = flow(shot, direction, 1)
        assert f.dtype == np.float32 and f.shape == (H, W, 2)
    right_fwd, right_bwd = flow(shot, "forward", 1), flow(shot, "backward", 1)
    assert (right_fwd[rows, 16:32] == (3.0, 0.0)).all(), "moving right: forward flow +x"
    assert (right_bwd[rows, 16:32] == (-3.0, 0.0)).all(), "it came from the left: backward flow -x"
    up_fwd, up_bwd = flow(shot, "forward", 2), flow(shot, "backward", 2)
    assert (up_fwd[rows, 16:32] == (0.0, -2.0)).all(), "moving up on screen: negative y (y down)"
    assert (up_bwd[rows, 16:32] == (0.0, 2.0)).all()
    assert (right_fwd[: rows.start] == 0).all(), "the static sky does not move"


def test_occlusion_marks_pixels_covered_in_the_next_frame(tmp_path):
    shot = make_shot(tmp_path / "shot", frames=3)
    for frame in (1, 2, 3):  # object 1 slides right 4 px a frame over a still background
        start = 8 + 4 * frame
        set_motion(shot, frame, slice(start, start + 12), (-4.0, 0.0, -4.0, 0.0))
    derive(shot)
    rows = layout(W, H).box_rows
    occluded = png(shot, "flow", "occlusion", "0001.png")
    assert occluded.dtype == np.uint8 and occluded.shape == (H, W)
    assert (occluded[rows, 24:28] == 255).all(), "the 4 columns the object moves onto are hidden in frame 2"
    assert (occluded[rows, 12:24] == 0).all(), "the object itself stays visible"
    assert (occluded[rows, 8:12] == 0).all() and (occluded[: rows.start] == 0).all()
    assert occluded.sum() == 255 * 4 * (rows.stop - rows.start), "nothing else is marked"
    # The last frame has no next frame: only pixels whose flow leaves the image would be marked.
    assert (png(shot, "flow", "occlusion", "0003.png") == 0).all()


def test_disocclusion_marks_pixels_uncovered_behind_a_moving_object(tmp_path):
    shot = make_shot(tmp_path / "shot", frames=3)
    for frame in (1, 2, 3):  # object 1 slides right 4 px a frame over a still background
        start = 8 + 4 * frame
        set_motion(shot, frame, slice(start, start + 12), (-4.0, 0.0, -4.0, 0.0))
    derive(shot)
    rows = layout(W, H).box_rows
    uncovered = png(shot, "flow", "disocclusion", "0002.png")
    assert uncovered.dtype == np.uint8 and uncovered.shape == (H, W)
    assert (uncovered[rows, 12:16] == 255).all(), "the 4 columns the object left were hidden in frame 1"
    assert (uncovered[rows, 16:28] == 0).all(), "the object itself was visible in frame 1"
    assert uncovered.sum() == 255 * 4 * (rows.stop - rows.start), "nothing else is marked"
    assert (png(shot, "flow", "occlusion", "0002.png")[rows, 12:16] == 0).all(), "occlusion looks ahead only"
    # The first frame has no previous frame: only pixels coming from outside the image would be marked.
    assert (png(shot, "flow", "disocclusion", "0001.png") == 0).all()


def test_occlusion_marks_pixels_leaving_the_image(tmp_path):
    shot = make_shot(tmp_path / "shot", frames=2)
    set_motion(shot, 2, slice(W - 6, W), (-4.0, 0.0, -4.0, 0.0))
    derive(shot)
    rows = layout(W, H).box_rows
    last = png(shot, "flow", "occlusion", "0002.png")
    assert (last[rows, W - 4 :] == 255).all() and (last[rows, : W - 4] == 0).all()


def test_role_masks_follow_the_object_index_and_moved_fragments(tmp_path):
    shot = make_shot(tmp_path / "shot", frames=2)
    data = json.loads((shot / "shot.json").read_text())
    data["roles"].update({"16": "building", "17": "building"})
    data["fragments"] = {"16": {"role": "building"}, "17": {"role": "building"}}
    data["moved"] = {"1": [], "2": [16]}
    (shot / "shot.json").write_text(json.dumps(data))
    rows = layout(W, H).box_rows

    def fragments(channels):
        index = channels["ViewLayer.Object Index.X"]
        index[rows, 0:4] = 16
        index[rows, 4:8] = 17
        index[0, 0] = 99  # an index no role claims

    indices = {}
    for frame in (1, 2):
        path = shot / "passes" / f"{frame:04d}.exr"
        rewrite_channels(path, fragments)
        (index,) = [
            np.array(c.pixels)
            for part in OpenEXR.File(str(path), separate_channels=True).parts
            for n, c in part.channels.items()
            if n.endswith("Object Index.X")
        ]
        indices[frame] = index
    derive(shot)
    for frame, debris in ((1, []), (2, [16])):
        index = indices[frame]
        expected = {
            "building": np.isin(index, [i for i in (1, 16, 17) if i not in debris]),
            "ground": index == 2,
            "debris": np.isin(index, debris),
        }
        found = {}
        for role, inside in expected.items():
            mask = png(shot, "mask", role, f"{frame:04d}.png")
            assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
            found[role] = mask == 255
            assert np.array_equal(found[role], inside), f"frame {frame}: role {role}"
        assert (sum(m.astype(int) for m in found.values()) <= 1).all(), "a pixel has at most one role"
        assert not any(m[index == 0].any() for m in found.values()), "background has no role"
    assert sorted(p.name for p in (shot / "control" / "mask").iterdir()) == ["building", "debris", "ground"]


def test_shot_without_fragments_has_no_debris_mask(tmp_path):
    shot = make_shot(tmp_path / "shot", frames=1)
    derive(shot)
    assert sorted(p.name for p in (shot / "control" / "mask").iterdir()) == ["building", "ground"]


def test_resumed_chunk_derives_occlusion_from_the_next_frame(tmp_path):
    """A rerun after losing a chunk's maps gives the same files as the first run."""
    shot = make_shot(tmp_path / "shot", frames=3)
    for frame in (1, 2, 3):
        start = 8 + 4 * frame
        set_motion(shot, frame, slice(start, start + 12), (-4.0, 0.0, -4.0, 0.0))
    derive(shot)
    first = {p: p.read_bytes() for p in (shot / "control").rglob("*") if p.is_file() and p.name != "stats.json"}
    assert len(first) == 3 * 9, "depth, normal, clay, forward, backward, occlusion, disocclusion, 2 masks for 3 frames"
    for path in first:
        if path.stem in ("0001", "0002"):
            path.unlink()
    run = run_backend("control", str(shot), "--frames", "1-2")
    assert run.returncode == 0, run.stderr
    assert {p: p.read_bytes() for p in first} == first
