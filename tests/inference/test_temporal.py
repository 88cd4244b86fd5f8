"""The temporal warp error (inference/temporal.py): ≈ 0 for an exact warp, high for a shuffled sequence."""

import numpy as np

from inference import temporal

HEIGHT, WIDTH, FRAMES = 48, 64, 6
ANGLE = 0.05  # radians per frame about the image centre


def texture(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth RGB pattern in [0.1, 0.9] (smooth, so bilinear sampling of it is nearly exact)."""
    return np.stack([0.5 + 0.4 * np.sin(x / 5.0 + c) * np.cos(y / 7.0 - c) for c in (0.0, 1.0, 2.0)], axis=-1)


def rotating_sequence():
    """Frames of the texture turning by ANGLE per frame, and the exact forward flow between them."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    cx, cy = (WIDTH - 1) / 2, (HEIGHT - 1) / 2

    def rotate(a):
        return (np.cos(a) * (x - cx) - np.sin(a) * (y - cy) + cx, np.sin(a) * (x - cx) + np.cos(a) * (y - cy) + cy)

    # Frame t shows the texture rotated by t * ANGLE: pixel p of frame t moves to R p in frame t+1.
    frames = [texture(*rotate(-t * ANGLE)) for t in range(FRAMES)]
    moved_x, moved_y = rotate(ANGLE)
    flow = np.stack([moved_x - x, moved_y - y], axis=-1)
    return frames, [flow] * (FRAMES - 1)


def no_occlusion():
    return [np.zeros((HEIGHT, WIDTH), bool)] * (FRAMES - 1)


def test_an_exact_warp_scores_about_zero_and_a_shuffled_sequence_scores_high():
    frames, flows = rotating_sequence()
    left = [np.zeros((HEIGHT, WIDTH), bool)] * (FRAMES - 1)
    for mask in left:
        mask[:, : WIDTH // 2] = True
    roles = {"left": left}
    exact = temporal.warp_error(frames, flows, no_occlusion(), roles)
    shuffled = temporal.warp_error([frames[i] for i in (3, 0, 5, 1, 4, 2)], flows, no_occlusion(), roles)
    assert exact["all"] < 1e-4 and exact["roles"]["left"] < 1e-4, exact
    assert shuffled["all"] > 0.01 and shuffled["roles"]["left"] > 0.01, shuffled
    # Unrelated uniform frames, moved by whole pixels (no interpolation): E(a - b)^2 = 2 var = 1/6.
    noise = [np.random.default_rng(t).random((HEIGHT, WIDTH, 3)) for t in range(FRAMES)]
    shift = [np.broadcast_to(np.array([2.0, 1.0]), (HEIGHT, WIDTH, 2))] * (FRAMES - 1)
    assert abs(temporal.warp_error(noise, shift, no_occlusion(), {})["all"] - 1 / 6) < 0.01


def test_occluded_pixels_and_other_roles_do_not_count():
    # The texture slides 2 px right per frame; each frame's left half flickers and is marked occluded.
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    frames = [texture(x - 2 * t, y) for t in range(FRAMES)]
    flows = [np.broadcast_to(np.array([2.0, 0.0]), (HEIGHT, WIDTH, 2))] * (FRAMES - 1)
    occluded = [np.zeros((HEIGHT, WIDTH), bool) for _ in range(FRAMES - 1)]
    for t in range(FRAMES):
        frames[t][:, : WIDTH // 2] = t % 2  # flickers black / white
    for mask in occluded:
        mask[:, : WIDTH // 2] = True
    right = [~o for o in occluded]
    masked = temporal.warp_error(frames, flows, occluded, {"right": right, "left": occluded})
    assert masked["all"] < 1e-12 and masked["roles"]["right"] < 1e-12, masked
    assert masked["roles"]["left"] is None, "a role with no visible pixel has no score"
    assert temporal.warp_error(frames, flows, no_occlusion(), {})["all"] > 0.01, "the flickering half counts when visible"


def test_summary_line_names_every_role():
    line = temporal.summary({"all": 0.01234, "roles": {"building": 0.02, "ground": None}})
    assert line.endswith("all 0.0123  building 0.0200  ground -")
