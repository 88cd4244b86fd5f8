"""Initial latent noise that moves with the debris (preset [noise], issue 18 item 1).

With `mode = "warped"`, frame t+1's noise is frame t's noise carried along the ground-truth
forward flow (control/flow/forward, docs/contract.md), with fresh noise where nothing lands
(disocclusions, the image edge), and every latent pixel stays exactly N(0, 1) and independent
of its neighbours. Naive bilinear warping would not: it averages neighbours, which shrinks the
variance and correlates them (Chang et al. 2024, sec. 3).

The transport is the integral noise of Chang, Cheng, Liu, Chan and Gao, "How I Warped Your
Noise: a Temporally-Correlated Noise Prior for Diffusion Models", ICLR 2024, in its discrete
form with forward (push) mapping of sub-pixels:

1. Conditional upsampling (their eq. 4 / Alg. 1 "upsample"): each latent pixel X ~ N(0, 1) is
   split into n = k*k sub-pixels  s_i = X / k + (u_i - mean(u)),  u_i ~ N(0, 1) i.i.d.
   Then sum_i s_i / k = X, and the s_i are i.i.d. N(0, 1): Cov(s_i, s_j) = 1/n + (delta_ij - 1/n).
2. Each sub-pixel moves along the flow sampled at its centre and lands in one latent pixel
   of frame t+1 (sub-pixels of occluded source pixels are dropped).
3. Aggregation (their eq. 6): a target pixel that received the set A of sub-pixels is
   G = sum_{i in A} s_i / sqrt(|A|). Every sub-pixel lands in at most one target, so the targets
   are sums over disjoint sets of i.i.d. N(0, 1) values: exactly N(0, 1) and independent.
   A target with A empty gets the fresh noise.
Chang et al. pull the target's polygon back with the backward flow and rasterise it in a
k-times upsampled grid; pushing sub-pixels forward instead makes the "disjoint sets" hold by
construction, so the output is exact even where the flow folds (occlusion edges).

Strength s mixes the warped noise with the frame's fresh noise, variance preserving:
sqrt(s) * G + sqrt(1 - s) * fresh, two independent N(0, 1) -> N(0, 1) (the mix also used by
Go-with-the-Flow, Burgert et al., CVPR 2025, for its "degradation"). s = 1: fully warped.

Flow on the latent grid: each sub-pixel takes the forward flow and occlusion of the pass pixel
under its centre (nearest sample, so an object's edge splits between the two motions instead
of averaging them), and the vectors are scaled by latent size / pass size per axis (x by
w/W, y by h/H), the same stretch the control maps get when they are resized to the
generation size.

Determinism: the fresh noise is exactly what the generation drew before this module existed
(torch CPU generator seeded with the shot seed, one randn of (1, C, F, h, w)); the sub-pixel
draws u continue that same generator, one (C, h*k, w*k) per frame transition.
"""

import functools
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from . import control, file_hashes, files
from .protocol import BackendError
from .shot import NoiseSettings, Shot

# k: sub-pixels per latent pixel along each axis. 4 resolves flow to 1/4 latent pixel (2 image
# pixels at SD1.5's factor 8); a power of two keeps X / k exact, so a whole-pixel move is bit exact.
SUBPIXELS = 4
METHOD = "integral noise, forward sub-pixel transport (Chang et al., ICLR 2024)"


def fresh_noise(seed: int, shape: tuple[int, int, int, int]):
    """(C, F, h, w) float32 i.i.d. N(0, 1) and the generator, positioned after it.

    The generation's noise before [noise] existed: a CPU generator (the same numbers on every
    device) seeded with the shot seed, one randn for the whole shot.
    """
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    noise = torch.randn((1, *shape), generator=generator, dtype=torch.float32)[0].numpy()
    return noise, generator


def shot_latents(shot: Shot) -> np.ndarray:
    """The initial latents `generate` passes to the pipeline (and `noise` writes), (C, F, h, w) float32."""
    from . import families

    family = families.get(shot.model.family)
    if hasattr(family, "shot_latents"):  # a family whose latents are not one per frame (Wan)
        return family.shot_latents(shot)
    scale = family.VAE_SCALE_FACTOR
    return initial_latents(shot, family.LATENT_CHANNELS, shot.model.height // scale, shot.model.width // scale)


def latents_sha256(latents: np.ndarray) -> str:
    """A digest of the exact float32 values (C-order bytes), to show a file and a run used the same latents."""
    return hashlib.sha256(np.ascontiguousarray(latents, dtype=np.float32).tobytes()).hexdigest()


def initial_latents(shot: Shot, channels: int, height: int, width: int) -> np.ndarray:
    """The shot's initial latents, (C, F, h, w) float32, as the [noise] preset asks."""
    if shot.noise.mode == "fresh":  # as the long-shot mode draws it (FreeNoise re-uses noise across contexts)
        from . import long_shot

        return long_shot.shot_noise(shot, (1, channels, len(shot.frames), height, width))[0].numpy()
    noise, generator = fresh_noise(shot.seed, (channels, len(shot.frames), height, width))
    import torch

    def draw(shape):
        return torch.randn(shape, generator=generator, dtype=torch.float32).numpy()

    motions = (sub_pixel_motion(shot, frame, height, width) for frame in shot.frames[:-1])
    return warp_sequence(noise, motions, shot.noise.strength, draw)


def warp_sequence(
    fresh: np.ndarray,
    motions: Iterable[tuple[np.ndarray, np.ndarray]],
    strength: float,
    draw: Callable[[tuple[int, ...]], np.ndarray],
) -> np.ndarray:
    """Frame 0 keeps its fresh noise; frame t+1 = mix(transport(frame t), fresh t+1).

    fresh: (C, F, h, w) i.i.d. N(0, 1). motions: per transition t -> t+1, the sub-pixel flow
    (h*k, w*k, 2) in latent pixels and the visibility (h*k, w*k). draw(shape) -> i.i.d. N(0, 1).
    """
    channels, frames, height, width = fresh.shape
    out = np.empty_like(fresh)
    out[:, 0] = fresh[:, 0]
    transitions = 0
    for t, (flow, visible) in enumerate(motions):
        transitions += 1
        if transitions >= frames:
            break
        residual = draw((channels, height * SUBPIXELS, width * SUBPIXELS))
        warped, covered = transport(out[:, t], flow, visible, residual)
        out[:, t + 1] = np.where(
            covered, np.sqrt(strength) * warped + np.sqrt(1.0 - strength) * fresh[:, t + 1], fresh[:, t + 1]
        )
    if transitions != frames - 1:
        raise ValueError(f"{frames} frames need {frames - 1} motions, got {transitions}")
    return out


def transport(noise: np.ndarray, flow: np.ndarray, visible: np.ndarray, residual: np.ndarray):
    """One step of the integral-noise transport (module docstring, steps 1-3).

    noise (C, h, w) N(0, 1); flow (h*k, w*k, 2) latent pixels at the sub-pixel centres, x right,
    y down; visible (h*k, w*k) bool; residual (C, h*k, w*k) i.i.d. N(0, 1).
    Returns the warped noise (C, h, w) float32 (0 where nothing landed) and `covered` (h, w).
    """
    channels, height, width = noise.shape
    k = SUBPIXELS
    # Step 1, conditional upsampling: residuals with zero mean over each pixel's k x k block.
    r = residual.reshape(channels, height, k, width, k)
    r = r - r.mean(axis=(2, 4), keepdims=True)
    # Step 2: where each sub-pixel centre lands.
    centres_x = (np.arange(width * k) + 0.5) / k
    centres_y = (np.arange(height * k) + 0.5) / k
    tx = np.floor(centres_x[None, :] + flow[..., 0]).astype(np.int64)
    ty = np.floor(centres_y[:, None] + flow[..., 1]).astype(np.int64)
    lands = visible & (tx >= 0) & (tx < width) & (ty >= 0) & (ty < height)
    target = np.where(lands, ty * width + tx, -1)
    # A pixel whose k x k sub-pixels all land in one target carries exactly X over: its residuals
    # sum to zero in exact arithmetic, so drop them rather than add rounding (whole-pixel moves
    # and zero flow are then bit exact; the target's distribution is the same either way).
    blocks = target.reshape(height, k, width, k)
    whole = (blocks >= 0).all(axis=(1, 3)) & (blocks == blocks[:, :1, :, :1]).all(axis=(1, 3))
    r = np.where(whole[None, :, None, :, None], 0.0, r)
    values = (noise[:, :, None, :, None] / np.float32(k) + r).reshape(channels, -1)
    # Step 3: G = sum over the landed set / sqrt(its size); bincount sums in float64.
    hits = target.reshape(-1) >= 0
    where = target.reshape(-1)[hits]
    count = np.bincount(where, minlength=height * width)
    offsets = (np.arange(channels) * height * width)[:, None]
    sums = np.bincount((where[None, :] + offsets).reshape(-1), weights=values[:, hits].reshape(-1),
                       minlength=channels * height * width).reshape(channels, height * width)
    covered = count > 0
    warped = np.zeros_like(sums)
    warped[:, covered] = sums[:, covered] / np.sqrt(count[covered])
    return warped.reshape(channels, height, width).astype(np.float32), covered.reshape(height, width)


def sub_pixel_motion(shot: Shot, frame: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame `frame`'s forward flow and visibility at the sub-pixel centres of the (h, w) latent grid."""
    flow_file, occlusion_file = control.flow_path(shot, "forward", frame), control.occlusion_path(shot, frame)
    if not flow_file.is_file() or not occlusion_file.is_file():
        raise BackendError(
            "missing_flow",
            f"[noise] mode = \"warped\" needs frame {frame}'s flow and occlusion ({flow_file}, {occlusion_file}).",
            f"Run: python -m inference control {shot.directory}  (or set [noise] mode = \"fresh\").",
        )
    forward = np.load(flow_file)
    occluded = np.asarray(Image.open(occlusion_file)) > 127
    return sample_motion(forward, occluded, height, width)


def sample_motion(forward: np.ndarray, occluded: np.ndarray, height: int, width: int):
    """Pass-resolution flow (H, W, 2) px and occlusion (H, W) -> sub-pixel flow in latent pixels and visibility."""
    pass_h, pass_w = forward.shape[:2]
    k = SUBPIXELS
    # The pass pixel under each sub-pixel centre (pixel i covers [i, i+1)).
    cols = np.minimum(((np.arange(width * k) + 0.5) / (width * k) * pass_w).astype(np.int64), pass_w - 1)
    rows = np.minimum(((np.arange(height * k) + 0.5) / (height * k) * pass_h).astype(np.int64), pass_h - 1)
    sampled = forward[rows[:, None], cols[None, :]].astype(np.float64)
    sampled[..., 0] *= width / pass_w
    sampled[..., 1] *= height / pass_h
    return sampled, ~occluded[rows[:, None], cols[None, :]]


def _record(shot: Shot) -> dict:
    record = {**asdict(shot.noise), "method": METHOD if shot.noise.mode == "warped" else "fresh"}
    lora = motion_lora_file(shot.noise)
    if lora is not None:  # by content: the same path with other weights is another LoRA
        record["motion_lora_sha256"] = file_hashes.sha256(lora)
    return record


def inputs(shot: Shot, last_offset: int) -> dict:
    """What the noise of frames 0..last_offset depends on besides seed and size (a window's inputs)."""
    record = _record(shot)
    if shot.noise.mode == "warped":
        used = shot.frames[:last_offset]  # the transitions up to the window's last frame
        record["motion_sha256"] = files.sha256_json({
            str(f): [_sha256_or_none(control.flow_path(shot, "forward", f)), _sha256_or_none(control.occlusion_path(shot, f))]
            for f in used
        })
    return record


def provenance(shot: Shot) -> dict:
    """The "noise" record of provenance.json."""
    record = _record(shot)
    if shot.noise.mode == "warped":
        record["subpixels"] = SUBPIXELS
    return record


def _sha256_or_none(path: Path) -> str | None:
    # Every window's inputs hash the flow files of all frames before its end, and the stale check
    # rebuilds them all: remember each file's hash by path, size and modification time.
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return _sha256_cached(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return files.sha256_file(Path(path))


def motion_lora_file(settings: NoiseSettings) -> Path | None:
    """The motion LoRA's .safetensors on this machine (a file, a directory holding one, or a hub id in
    the Hugging Face cache), None when the preset names none. Never downloads."""
    if not settings.motion_lora:
        return None
    location = Path(settings.motion_lora).expanduser()
    directory = location if location.is_dir() else None
    if location.is_file():
        return location.resolve()
    if directory is None:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

        try:
            directory = Path(snapshot_download(settings.motion_lora, revision=settings.motion_lora_revision,
                                               local_files_only=True))
        except (HFValidationError, LocalEntryNotFoundError, OSError):
            directory = None
    found = sorted(directory.glob("*.safetensors")) if directory is not None else []
    if len(found) != 1:
        what = "is neither a file, a directory nor a hub id in the Hugging Face cache" if directory is None else (
            f"holds {len(found)} .safetensors files in {directory}, not one")
        raise BackendError(
            "missing_motion_lora",
            f"[noise] motion_lora = {settings.motion_lora!r} {what}.",
            "Name the LoRA's .safetensors file or a directory holding just it, or download the hub repository first "
            f"(huggingface-cli download {settings.motion_lora} --revision {settings.motion_lora_revision}); "
            "or set motion_lora = \"\" to run without one.",
        )
    return found[0].resolve()


def load_motion_lora(pipe, path: Path | None) -> None:
    """Load the motion LoRA into the pipeline's motion UNet (diffusers' load_lora_weights, as its
    AnimateDiff docs do for guoyww's motion LoRAs); models tuned on warped noise follow it closely."""
    if path is None:
        return
    try:
        pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name="motion", local_files_only=True)
    except (OSError, ValueError) as exc:
        raise BackendError(
            "bad_motion_lora",
            f"Could not load the motion LoRA {path}: {exc}",
            "diffusers needs the peft package for LoRAs (pip install peft into the backend's environment); "
            "check that the file is a LoRA for an SD1.5 AnimateDiff motion adapter.",
        ) from exc
