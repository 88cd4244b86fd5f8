"""Flow-warped initial noise (inference/noise_warp.py), measured: distribution, exact moves, correlation.

Statistics run many independent noise chains at once (as channels) through the same flow, so each
pixel of each frame has N samples; the tolerances are 5 standard errors of those samples.
"""

import numpy as np
import pytest

from inference import noise_warp

CHAINS = 512  # independent samples per pixel and frame
LATENT = (12, 16)  # h, w
PASS = (48, 64)  # H, W: the passes are 4x the latent grid here
FRAMES = 12


def normal(seed: int):
    rng = np.random.default_rng(seed)
    return lambda shape: rng.standard_normal(shape).astype(np.float32)


def moving_shot_motion(t: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame t's forward flow (pass pixels) and occlusion: the camera rotates and zooms about the centre
    (by a different amount each frame) while a box slides right over the background, hiding what it lands on."""
    height, width = PASS
    y, x = np.mgrid[0:height, 0:width] + 0.5
    angle, zoom = 0.03 + 0.01 * t, 1.0 + 0.01 * (t % 3)
    cx, cy = width / 2, height / 2
    flow = np.stack([
        zoom * (np.cos(angle) * (x - cx) - np.sin(angle) * (y - cy)) + cx - x,
        zoom * (np.sin(angle) * (x - cx) + np.cos(angle) * (y - cy)) + cy - y,
    ], axis=-1)
    box_x = 8 + 5 * t
    box = (y > 16) & (y < 32) & (x > box_x) & (x < box_x + 12)
    flow[box] = (5.0 + 0.5 * t, -1.5)
    occluded = np.zeros((height, width), bool)
    occluded[(y > 16) & (y < 32) & (x >= box_x + 12) & (x < box_x + 17.5 + 0.5 * t) & ~box] = True  # covered next
    return flow.astype(np.float32), occluded


def motions(frames: int = FRAMES):
    return [noise_warp.sample_motion(*moving_shot_motion(t), *LATENT) for t in range(frames - 1)]


@pytest.fixture(scope="module")
def chains():
    fresh = normal(0)((CHAINS, FRAMES, *LATENT))
    return fresh, noise_warp.warp_sequence(fresh, motions(), 1.0, normal(1))


def bilinear_warp(fresh: np.ndarray) -> np.ndarray:
    """The naive warp the transport replaces: frame t+1 = frame t sampled bilinearly at q - F(q)."""
    out = fresh.copy()
    h, w = LATENT
    k = noise_warp.SUBPIXELS
    for t, (flow, _) in enumerate(motions()):
        centre = flow[k // 2 :: k, k // 2 :: k]
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        sx, sy = np.clip(x - centre[..., 0], 0, w - 1), np.clip(y - centre[..., 1], 0, h - 1)
        x0, y0 = np.minimum(np.floor(sx).astype(int), w - 2), np.minimum(np.floor(sy).astype(int), h - 2)
        fx, fy = sx - x0, sy - y0
        prev = out[:, t]
        out[:, t + 1] = ((1 - fx) * (1 - fy) * prev[:, y0, x0] + fx * (1 - fy) * prev[:, y0, x0 + 1]
                         + (1 - fx) * fy * prev[:, y0 + 1, x0] + fx * fy * prev[:, y0 + 1, x0 + 1])
    return out


def gaussian_problems(noise: np.ndarray) -> list[str]:
    """What is wrong with `noise` (chains, frames, h, w) as i.i.d. N(0, 1) per pixel, at 5 standard errors."""
    n = noise.shape[0]
    mean, var = noise.mean(axis=0), noise.var(axis=0)
    problems = []
    if np.abs(mean).max() > 5 / np.sqrt(n):
        problems.append(f"a pixel's mean is {np.abs(mean).max():.3f} (tolerance {5 / np.sqrt(n):.3f})")
    if np.abs(var - 1).max() > 5 * np.sqrt(2 / n):
        problems.append(f"a pixel's variance is off by {np.abs(var - 1).max():.3f} (tolerance {5 * np.sqrt(2 / n):.3f})")
    if abs(var.mean() - 1) > 0.01:
        problems.append(f"the mean variance is {var.mean():.4f} (tolerance 1 ± 0.01)")
    kurtosis = (noise**4).mean() / (noise**2).mean() ** 2
    if abs(kurtosis - 3) > 0.05:
        problems.append(f"kurtosis {kurtosis:.3f}, a Gaussian's is 3 (tolerance 0.05)")
    for name, a, b in (("x", noise[..., :, :-1], noise[..., :, 1:]), ("y", noise[..., :-1, :], noise[..., 1:, :]),
                       ("diagonal", noise[..., :-1, :-1], noise[..., 1:, 1:])):
        corr = np.corrcoef(a.ravel(), b.ravel())[0, 1]
        if abs(corr) >= 0.05:
            problems.append(f"neighbours along {name} correlate at {corr:.3f} (tolerance |corr| < 0.05)")
    return problems


def test_warped_noise_over_a_moving_shot_is_standard_normal_per_pixel_and_uncorrelated(chains):
    _, warped = chains
    assert gaussian_problems(warped) == []
    # The same checks catch the naive warp this replaces (averaging shrinks variance, correlates neighbours).
    naive = gaussian_problems(bilinear_warp(chains[0]))
    assert any("variance" in p for p in naive) and any("correlate" in p for p in naive), naive


def test_noise_follows_the_flow_on_visible_pixels(chains):
    fresh, warped = chains
    k = noise_warp.SUBPIXELS
    along, unwarped = [], []
    for t, (flow, visible) in enumerate(motions()):
        # Each visible latent pixel's centre, moved along the flow, to the pixel it lands in.
        centre, seen = flow[k // 2 :: k, k // 2 :: k], visible[k // 2 :: k, k // 2 :: k]
        h, w = LATENT
        y, x = np.mgrid[0:h, 0:w]
        tx, ty = np.floor(x + 0.5 + centre[..., 0]).astype(int), np.floor(y + 0.5 + centre[..., 1]).astype(int)
        ok = seen & (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)
        along.append(np.corrcoef(warped[:, t][:, ok].ravel(), warped[:, t + 1][:, ty[ok], tx[ok]].ravel())[0, 1])
        unwarped.append(np.corrcoef(fresh[:, t][:, ok].ravel(), fresh[:, t + 1][:, ty[ok], tx[ok]].ravel())[0, 1])
    # A move by a fraction (a, b) of a pixel keeps (1-a)(1-b) of a pixel's sub-pixels together in the nearest
    # target: 0.56 on average over fractions up to half a pixel; whole-pixel moves keep 1 (tested below).
    assert min(along) > 0.5, along
    assert max(np.abs(unwarped)) < 0.05, "fresh noise does not follow anything"


def test_strength_mixes_in_fresh_noise_and_keeps_the_variance(chains):
    fresh, full = chains
    half = noise_warp.warp_sequence(fresh[:, :3], motions(3), 0.5, normal(1))
    assert gaussian_problems(half) == []
    # Frame 1 = sqrt(.5) warped + sqrt(.5) fresh, where the warped part is the same as at strength 1.
    assert abs(np.corrcoef(half[:, 1].ravel(), full[:, 1].ravel())[0, 1] - np.sqrt(0.5)) < 0.02
    none = noise_warp.warp_sequence(fresh[:, :3], motions(3), 0.0, normal(1))
    assert np.array_equal(none, fresh[:, :3]), "strength 0 is today's fresh noise, bit for bit"


def test_zero_flow_leaves_the_noise_unchanged():
    fresh = normal(2)((4, 5, *LATENT))
    still = noise_warp.sample_motion(np.zeros((*PASS, 2), np.float32), np.zeros(PASS, bool), *LATENT)
    warped = noise_warp.warp_sequence(fresh, [still] * 4, 1.0, normal(3))
    assert all(np.array_equal(warped[:, t], fresh[:, 0]) for t in range(5))


def test_an_integer_translation_moves_the_noise_exactly_with_fresh_noise_only_in_the_uncovered_strip():
    fresh = normal(4)((4, 2, *LATENT))
    scale = PASS[0] // LATENT[0]
    flow = np.zeros((*PASS, 2), np.float32)
    flow[...] = (2 * scale, 1 * scale)  # 2 latent pixels right, 1 down
    moved = noise_warp.warp_sequence(fresh, [noise_warp.sample_motion(flow, np.zeros(PASS, bool), *LATENT)], 1.0, normal(5))
    assert np.array_equal(moved[:, 1, 1:, 2:], fresh[:, 0, :-1, :-2]), "carried over bit for bit"
    strip = np.zeros(LATENT, bool)
    strip[0, :] = strip[:, :2] = True
    assert np.array_equal(moved[:, 1][:, strip], fresh[:, 1][:, strip]), "uncovered strip: this frame's fresh noise"


def test_occluded_pixels_are_not_carried():
    fresh = normal(6)((4, 2, *LATENT))
    occluded = np.zeros(PASS, bool)
    occluded[:, : PASS[1] // 2] = True  # the left half is hidden in the next frame
    still = noise_warp.sample_motion(np.zeros((*PASS, 2), np.float32), occluded, *LATENT)
    warped = noise_warp.warp_sequence(fresh, [still], 1.0, normal(7))
    half = LATENT[1] // 2
    assert np.array_equal(warped[:, 1, :, half:], fresh[:, 0, :, half:])
    assert np.array_equal(warped[:, 1, :, :half], fresh[:, 1, :, :half])


def test_flow_is_scaled_per_axis_from_the_passes_to_the_latent_grid():
    # Passes 64x48, latent 16x10: x scales by 16/64, y by 10/48.
    flow = np.zeros((48, 64, 2), np.float32)
    flow[...] = (8.0, 4.8)
    sampled, visible = noise_warp.sample_motion(flow, np.zeros((48, 64), bool), 10, 16)
    assert sampled.shape == (10 * noise_warp.SUBPIXELS, 16 * noise_warp.SUBPIXELS, 2) and visible.all()
    np.testing.assert_allclose(sampled[0, 0], (2.0, 1.0), rtol=1e-6)
