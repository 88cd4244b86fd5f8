"""Temporal stability of the generated frames: the warping error along the ground-truth flow (issue 18 item 5).

Lai, Huang, Wang, Shechtman, Yumer and Yang, "Learning Blind Video Temporal Consistency",
ECCV 2018, eq. 9: E_warp = sum_t sum_p M_t(p) |V_t(p) - warp(V_{t+1})(p)|^2 / sum_t sum_p M_t(p),
where warp(V_{t+1}) is frame t+1 sampled along the flow from t and M_t masks out occluded pixels.
Here the flow is Blender's exact forward flow (control/flow/forward) instead of an estimate, M_t
is "not occluded" (control/flow/occlusion) and, per role, also the role's mask at frame t
(control/mask/<role>). Pixels are RGB in [0, 1], the squared error averaged over the channels:
0 for frames that are an exact warp of each other, about 2 var(V) for unrelated ones.
"""

import numpy as np
from PIL import Image

from . import blend, control
from .shot import Shot

METHOD = "warping error, Lai et al. ECCV 2018 eq. 9, Blender forward flow, RGB in [0, 1], mean squared"


def sample(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear sample of (H, W, C) at pixel-centre coordinates x, y (pixel i's centre is i), edges clamped."""
    height, width = image.shape[:2]
    x = np.clip(x, 0, width - 1)
    y = np.clip(y, 0, height - 1)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def frame_error(current: np.ndarray, following: np.ndarray, forward: np.ndarray, occluded: np.ndarray):
    """Per-pixel squared error (H, W) between frame t and frame t+1 sampled at p + F(p), and the
    pixels it counts on: visible in t+1 (not occluded, landing inside the image)."""
    height, width = current.shape[:2]
    x = np.arange(width, dtype=np.float64)[None, :] + forward[..., 0]
    y = np.arange(height, dtype=np.float64)[:, None] + forward[..., 1]
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    warped = sample(following, x, y)
    return ((current - warped) ** 2).mean(axis=-1), inside & ~occluded


def warp_error(frames: list[np.ndarray], flows: list[np.ndarray], occlusions: list[np.ndarray],
               role_masks: dict[str, list[np.ndarray]]) -> dict:
    """E_warp over a sequence: frames (H, W, 3) in [0, 1]; flows/occlusions/role masks of frames 0..n-2."""
    totals = {"all": [0.0, 0]} | {role: [0.0, 0] for role in role_masks}
    for t in range(len(frames) - 1):
        error, valid = frame_error(frames[t], frames[t + 1], flows[t], occlusions[t])
        for name, total in totals.items():
            mask = valid if name == "all" else valid & role_masks[name][t]
            total[0] += float(error[mask].sum())
            total[1] += int(mask.sum())
    values = {name: (total / count if count else None) for name, (total, count) in totals.items()}
    return {
        "method": METHOD,
        "all": values.pop("all"),
        "roles": values,
        "pixels": totals["all"][1],
    }


def measure(shot: Shot) -> dict:
    """E_warp of the shot's blended frames (frames/), all pixels and per role."""
    size = np.load(control.flow_path(shot, "forward", shot.frames[0])).shape[1::-1]  # (W, H) of the passes
    frames, flows, occlusions = [], [], []
    masks = {role: [] for role in control.roles(shot)}
    for index, frame in enumerate(shot.frames):
        image = Image.open(blend.frame_path(shot, frame)).convert("RGB")
        if image.size != size:
            image = image.resize(size, Image.Resampling.BILINEAR)
        frames.append(np.asarray(image, dtype=np.float64) / 255.0)
        if index == len(shot.frames) - 1:
            break
        flows.append(np.load(control.flow_path(shot, "forward", frame)).astype(np.float64))
        occlusions.append(np.asarray(Image.open(control.occlusion_path(shot, frame))) > 127)
        for role in masks:
            masks[role].append(np.asarray(Image.open(control.mask_path(shot, role, frame))) > 127)
    result = warp_error(frames, flows, occlusions, masks)
    return {**result, "frames": [shot.frame_start, shot.frame_end]}


def summary(record: dict) -> str:
    """One line for the contact sheet."""
    def number(value):
        return "-" if value is None else f"{value:.4f}"

    roles = "  ".join(f"{role} {number(value)}" for role, value in record["roles"].items())
    return f"temporal warp error (MSE, lower is steadier): all {number(record['all'])}  {roles}".rstrip()
