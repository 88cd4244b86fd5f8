"""The preset sections for long shots and GPU memory: `[long_shot]` and `[memory]`.

The backend reads both from shot.json (inference/long_shot.py, inference/memory.py) and checks
them again; the names and choices here are diffusers' own (AnimateDiffFreeNoiseMixin.enable_free_noise,
enable_free_noise_split_inference, enable_vae_slicing/tiling, enable_model/sequential_cpu_offload).
"""
from __future__ import annotations

from dataclasses import dataclass, field


def _range(lo=None, hi=None, **extra):
    return {"min": lo, "max": hi, **extra}


@dataclass(frozen=True)
class LongShotSettings:
    # free_noise: one pass over the whole shot, windows fused in latent space at every step (FreeNoise,
    # Qiu et al. 2023); windows: independent windows of [model] window frames that a farm can run in parallel.
    mode: str = field(default="free_noise", metadata={"choices": ("free_noise", "windows")})
    # FreeNoise's sliding context: diffusers' defaults (16 = the frames the v1-5 motion modules were trained on).
    context_length: int = field(default=16, metadata=_range(1, 64))
    context_stride: int = field(default=4, metadata=_range(1, 64))
    weighting_scheme: str = field(default="pyramid", metadata={"choices": ("flat", "pyramid", "delayed_reverse_sawtooth")})
    # How FreeNoise lays out the shot's noise; used when no full-length latents are passed in.
    noise_type: str = field(default="shuffle_context", metadata={"choices": ("shuffle_context", "repeat_context", "random")})
    # Split inference ([memory] split_inference): batch items per chunk (diffusers' defaults).
    spatial_split_size: int = field(default=256, metadata=_range(1, 1_000_000))
    temporal_split_size: int = field(default=16, metadata=_range(1, 1024))


@dataclass(frozen=True)
class MemorySettings:
    # auto: bf16 on a CUDA GPU that supports it, else fp16 on a GPU, fp32 on the CPU.
    dtype: str = field(default="auto", metadata={"choices": ("auto", "fp16", "bf16", "fp32")})
    vae_slicing: bool = False  # decode one frame at a time (same frames, less memory)
    vae_tiling: bool = False  # decode in overlapping tiles (large frames; changes pixels slightly)
    offload: str = field(default="none", metadata={"choices": ("none", "model", "sequential")})
    split_inference: bool = True  # free_noise mode: peak memory flat with the shot's length
    retry_with_offload: bool = True  # on GPU out-of-memory, retry a window once with model CPU offload


SECTIONS = {"long_shot": LongShotSettings, "memory": MemorySettings}


def cross_checks(preset) -> list[str]:
    long_shot = preset.long_shot
    if long_shot.context_stride > long_shot.context_length:
        return [f"long_shot.context_stride: {long_shot.context_stride} must not exceed "
                f"long_shot.context_length {long_shot.context_length} (frames between windows would be skipped)"]
    return []
