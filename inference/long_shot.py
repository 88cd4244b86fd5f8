"""Long shots (preset `[long_shot]`): FreeNoise in one pass, or independent windows.

free_noise: the whole shot is one "window" of the plan, denoised by one pipeline call with diffusers'
FreeNoise (AnimateDiffFreeNoiseMixin: the motion modules attend within sliding context windows whose
outputs are averaged in latent space at every step, Qiu et al. 2023, arXiv:2310.15169), with split
inference so peak memory stays flat as the shot grows. A kill loses the whole pass (no checkpoint).
windows: the plan of [model] window/overlap (inference/windows.py), each window independent, so a farm
runs them in parallel and a kill loses at most the window in progress.

The seam metric (`seam_ratio`) is how we compare the two: see its docstring.
"""

from dataclasses import asdict, dataclass

from . import split_controlnet, windows

MODES = ("free_noise", "windows")
WEIGHTING_SCHEMES = ("flat", "pyramid", "delayed_reverse_sawtooth")  # AnimateDiffFreeNoiseMixin.enable_free_noise
NOISE_TYPES = ("shuffle_context", "repeat_context", "random")


@dataclass(frozen=True)
class LongShot:
    mode: str = "free_noise"
    context_length: int = 16
    context_stride: int = 4
    weighting_scheme: str = "pyramid"
    noise_type: str = "shuffle_context"
    spatial_split_size: int = 256
    temporal_split_size: int = 16


def settings(table: dict | None) -> LongShot:
    """The preset's [long_shot] table (absent in shots exported before it existed: the defaults), validated."""
    values = {**asdict(LongShot()), **(table or {})}
    unknown = set(values) - set(asdict(LongShot()))
    if unknown:
        raise ValueError(f"long_shot has unknown keys {sorted(unknown)}")
    result = LongShot(
        mode=str(values["mode"]),
        context_length=int(values["context_length"]),
        context_stride=int(values["context_stride"]),
        weighting_scheme=str(values["weighting_scheme"]),
        noise_type=str(values["noise_type"]),
        spatial_split_size=int(values["spatial_split_size"]),
        temporal_split_size=int(values["temporal_split_size"]),
    )
    for key, choices in (("mode", MODES), ("weighting_scheme", WEIGHTING_SCHEMES), ("noise_type", NOISE_TYPES)):
        if getattr(result, key) not in choices:
            raise ValueError(f"long_shot {key} {getattr(result, key)!r} must be one of {choices}")
    if not 1 <= result.context_stride <= result.context_length:
        raise ValueError(f"long_shot context_stride {result.context_stride} must be between 1 and context_length "
                         f"{result.context_length}")
    if result.spatial_split_size < 1 or result.temporal_split_size < 1:
        raise ValueError("long_shot spatial_split_size and temporal_split_size must be at least 1")
    return result


def plan(shot) -> list[windows.Window]:
    """free_noise: one window over the whole shot; windows: [model] window/overlap (latent-aligned
    for a family whose VAE compresses time, see `aligned_plan`)."""
    if shot.long_shot.mode == "free_noise":
        return [windows.Window(0, 0, len(shot.frames))]
    factor = frames_per_latent(shot)
    if factor > 1:
        return aligned_plan(len(shot.frames), shot.model.window, shot.model.overlap)
    return windows.plan(len(shot.frames), shot.model.window, shot.model.overlap)


def frames_per_latent(shot) -> int:
    """Frames per latent frame of the shot's model family: 1 (AnimateDiff: one latent per frame) or
    its VAE's temporal compression (Wan: 4, so a clip has 4k+1 frames)."""
    from . import families

    return getattr(families.get(shot.model.family), "FRAMES_PER_LATENT", 1)


def aligned_plan(frame_count: int, window: int, overlap: int) -> list[windows.Window]:
    """Windows for a VAE that compresses time by f (Wan: f = 4, clips of 4k+1 frames; the family
    checks that `window` is 4k+1 and `window - overlap` a multiple of f).

    Every window starts at a multiple of the stride, so at a multiple of f, and the shot's noise
    (one latent frame per f frames) is sliced per window on latent boundaries. Unlike windows.plan,
    the last window is not moved back: it keeps its start and is cut at the shot's last frame; the
    family pads its control video to the next 4k+1 frames (`generated_length`) by repeating the
    last control frame, and drops the padded frames' output (they are never written).
    """
    stride = window - overlap
    starts = [0]
    while starts[-1] + window < frame_count:
        starts.append(starts[-1] + stride)
    return [windows.Window(i, s, min(s + window, frame_count)) for i, s in enumerate(starts)]


def generated_length(window: windows.Window, factor: int) -> int:
    """Frames a window generates: its frames rounded up to the next f*k + 1 (the rest is padding)."""
    count = window.stop - window.start
    return -(-(count - 1) // factor) * factor + 1


def context_length(shot) -> int:
    """FreeNoise's context, at most the shot: diffusers refuses fewer frames than one context window."""
    return min(shot.long_shot.context_length, len(shot.frames))


def record(shot, split_inference: bool) -> dict:
    """What provenance.json and the window records say about the mode (only what changes the frames)."""
    if shot.long_shot.mode == "windows":
        return {"mode": "windows", "window": shot.model.window, "overlap": shot.model.overlap}
    return {
        "mode": "free_noise",
        "context_length": context_length(shot),
        "context_stride": shot.long_shot.context_stride,
        "weighting_scheme": shot.long_shot.weighting_scheme,
        "noise_type": shot.long_shot.noise_type,
        # The ControlNets run in temporal chunks too (inference/split_controlnet.py): their frames differ
        # from the unchunked run's by up to one level, so records made before that are not reused.
        "split_inference": (
            {"spatial_split_size": shot.long_shot.spatial_split_size,
             "temporal_split_size": shot.long_shot.temporal_split_size, "controlnets": "temporal chunks"}
            if split_inference else None
        ),
    }


def prepare(pipe, shot, split_inference: bool) -> None:
    """FreeNoise on for free_noise mode, off for windows; a pipeline handed in already set up
    another way (tests, bench/) is refused rather than silently run with other settings."""
    wanted = None
    if shot.long_shot.mode == "free_noise":
        wanted = (context_length(shot), shot.long_shot.context_stride, shot.long_shot.weighting_scheme,
                  shot.long_shot.noise_type)
    current = None
    if pipe.free_noise_enabled:
        current = (pipe._free_noise_context_length, pipe._free_noise_context_stride,
                   pipe._free_noise_weighting_scheme, pipe._free_noise_noise_type)
    if current is None and wanted is not None:
        enable_free_noise(pipe, shot, split_inference)
    elif current != wanted:
        raise ValueError(f"the pipeline's FreeNoise settings {current} are not this shot's {wanted}; load another")


def enable_free_noise(pipe, shot, split_inference: bool) -> None:
    """FreeNoise as diffusers' docs enable it, on our pipeline.

    enable_free_noise() reads motion_max_seq_length from `pipe.motion_adapter` only to warn; our
    pipeline holds the motion modules inside its UNet and no adapter (models.load_pipeline), so a
    stand-in with the UNet's own value is set for that call and removed again.
    """
    from types import SimpleNamespace

    pipe.motion_adapter = SimpleNamespace(config=SimpleNamespace(motion_max_seq_length=pipe.unet.config.motion_max_seq_length))
    try:
        pipe.enable_free_noise(
            context_length=context_length(shot),
            context_stride=shot.long_shot.context_stride,
            weighting_scheme=shot.long_shot.weighting_scheme,
            noise_type=shot.long_shot.noise_type,
        )
    finally:
        pipe.motion_adapter = None
    if split_inference:
        pipe.enable_free_noise_split_inference(shot.long_shot.spatial_split_size, shot.long_shot.temporal_split_size)
        # diffusers splits the UNet only; the ControlNets, run over all frames at once, set the peak.
        split_controlnet.enable(pipe, shot.long_shot.temporal_split_size)


def shot_noise(shot, shape: tuple[int, ...]):
    """The shot's fresh initial latents (1, C, F, h, w), drawn once from the seed on the CPU (every
    device gets the same numbers).

    windows: plain Gaussian noise, sliced per window, so overlapping frames of two windows start
    from the same noise. free_noise: what diffusers' own call draws for generator=seed, latents=None
    (AnimateDiffFreeNoiseMixin._prepare_latents_free_noise: Gaussian noise, then `noise_type` re-used
    across context windows), so our call and the plain diffusers call start from the same latents.
    That method reads only the FreeNoise settings and the VAE factor, so it runs here without a
    pipeline (the `noise` command has none), on latent-sized height and width (factor 1).
    """
    from types import SimpleNamespace

    import torch
    from diffusers.pipelines.free_noise_utils import AnimateDiffFreeNoiseMixin

    generator = torch.Generator("cpu").manual_seed(shot.seed)
    if shot.long_shot.mode == "windows":
        return torch.randn(shape, generator=generator, dtype=torch.float32)
    settings = SimpleNamespace(
        _free_noise_context_length=context_length(shot),
        _free_noise_context_stride=shot.long_shot.context_stride,
        _free_noise_noise_type=shot.long_shot.noise_type,
        vae_scale_factor=1,
    )
    batch, channels, frames, height, width = shape
    return AnimateDiffFreeNoiseMixin._prepare_latents_free_noise(
        settings, batch, channels, frames, height, width, torch.float32, torch.device("cpu"), generator
    )


def seam_ratio(frames, boundaries: list[int]) -> float:
    """Seam metric: how much a seam jumps, against how much the video moves elsewhere.

    frames (F, H, W, C). d_i = mean |frame[i+1] - frame[i]| over pixels and channels. A boundary b is
    the offset of the first frame after a cut (a window's first frame past its predecessor's last
    frame, or where a cross-fade ends). The metric is mean(d over the pairs that straddle a boundary,
    i.e. d_{b-1}) / mean(d over every other pair). 1.0: a seam is as smooth as any other frame step;
    above 1: the seam jumps. With no boundary (one window) it is undefined (nan).
    """
    import numpy as np  # the rest of this module is read by `doctor`, which must run without numpy

    frames = np.asarray(frames, dtype=np.float64)
    steps = np.abs(np.diff(frames, axis=0)).mean(axis=tuple(range(1, frames.ndim)))
    across = sorted({b - 1 for b in boundaries if 0 < b < len(frames)})
    inside = [i for i in range(len(steps)) if i not in across]
    if not across or not inside:
        return float("nan")
    return float(steps[across].mean() / steps[inside].mean())


def seam_boundaries(plan: list[windows.Window]) -> list[int]:
    """Where the frames of windows mode change hands: each overlap's ends (where a cross-fade starts
    and stops mixing two windows). Used with `seam_ratio`, on the same offsets for both modes."""
    boundaries = set()
    for a, b in zip(plan, plan[1:]):
        boundaries.update((b.start, a.stop))
    return sorted(boundaries)
