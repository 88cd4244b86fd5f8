"""Optical flow and occlusion from Blender's Vector pass (docs/contract.md, "control/flow").

The Vector pass is in pixels with y up: XY is the motion towards the previous frame, ZW is
minus the motion towards the next frame (pinned by tests/addon/test_passes.py). In image
coordinates (x right, y down) that makes forward flow (t -> t+1) = (-Z, +W) and backward
flow (t -> t-1) = (X, -Y) (docs/design.md).
"""

import numpy as np

# Forward-backward consistency (Sundaram, Brox and Keutzer, "Dense point trajectories by
# GPU-accelerated large displacement optical flow", ECCV 2010, eq. 5): a pixel is occluded in
# the next frame when |F(p) + B'(p + F(p))|^2 > ALPHA (|F|^2 + |B'|^2) + BETA, with their
# ALPHA = 0.01 and BETA = 0.5 px^2. The Vector pass is exact where the surface stays visible,
# so these loose bounds only ever fire where another surface lands on p + F(p).
ALPHA = 0.01
BETA = 0.5


def forward(vector: tuple[np.ndarray, ...]) -> np.ndarray:
    """(H, W, 2) float32 pixels from frame t to t+1, x right, y down; `vector` is the pass's X, Y, Z, W."""
    return _pair(np.negative(vector[2]), vector[3])


def backward(vector: tuple[np.ndarray, ...]) -> np.ndarray:
    """(H, W, 2) float32 pixels from frame t to t-1, x right, y down."""
    return _pair(vector[0], np.negative(vector[1]))


def _pair(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = np.empty((*x.shape, 2), np.float32)
    out[..., 0], out[..., 1] = x, y
    return out


def occlusion(forward_flow: np.ndarray, next_backward: np.ndarray | None) -> np.ndarray:
    """True where the pixel is not visible in the next frame.

    A pixel whose forward flow leaves the image is occluded. `next_backward` is frame t+1's
    backward flow, sampled at p + F(p) (nearest pixel: bilinear sampling would blend two
    surfaces' motions at an edge). Cycles averages the Vector pass over the samples, so a pixel
    on an object's edge carries a blend of both surfaces' motions and may fall either way.
    With no next frame (the shot's last frame) only pixels leaving the image are marked.
    """
    height, width = forward_flow.shape[:2]
    # Every step below is the formula's, in its order and in float32, on contiguous planes and in
    # place: the same booleans as the plain expressions, in 0.8x their time.
    fx, fy = forward_flow[..., 0].copy(), forward_flow[..., 1].copy()
    # The landing pixel, rounded, kept in float32 (exact for any pixel of an image under 2^24
    # pixels wide; farther ones are outside either way).
    x = np.arange(width, dtype=np.float32)[None, :] + fx
    np.rint(x, out=x)
    y = np.arange(height, dtype=np.float32)[:, None] + fy
    np.rint(y, out=y)
    outside = x < 0
    outside |= x > width - 1
    outside |= y < 0
    outside |= y > height - 1
    if next_backward is None:
        return outside
    np.clip(x, 0, width - 1, out=x)
    np.clip(y, 0, height - 1, out=y)
    at = y.astype(np.int32)
    at *= width
    at += x.astype(np.int32)
    # B'(p + F(p)) in one gather of whole (x, y) pairs, 8 bytes each.
    pairs = np.ascontiguousarray(next_backward, dtype=np.float32).view(np.int64).reshape(-1)
    landed = pairs.take(at).view(np.float32)
    bx, by = landed[:, 0::2].copy(), landed[:, 1::2].copy()
    mismatch = fx + bx  # |F + B'|^2
    mismatch *= mismatch
    dy = fy + by
    dy *= dy
    mismatch += dy
    bound = fx  # ALPHA (|F|^2 + |B'|^2) + BETA, summed in the formula's order
    bound *= fx
    fy *= fy
    bound += fy
    bx *= bx
    bound += bx
    by *= by
    bound += by
    bound *= np.float32(ALPHA)
    bound += np.float32(BETA)
    outside |= mismatch > bound
    return outside


def disocclusion(backward_flow: np.ndarray, previous_forward: np.ndarray | None) -> np.ndarray:
    """True where the pixel was not visible in the previous frame: uncovered behind a moving
    object, or come in from outside the image.

    The same forward-backward check run the other way: frame t's backward flow against frame
    t-1's forward flow sampled at p + B(p). A background pixel a cube has just left has B = 0,
    but at p frame t-1 shows the cube, whose forward flow is the cube's motion, so the check
    fails. With no previous frame (the shot's first) only pixels coming from outside are marked.
    """
    return occlusion(backward_flow, previous_forward)
