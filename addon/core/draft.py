"""The preset's `[draft]` section: a few-step draft of the whole shot (inference/draft.py).

A draft swaps the motion adapter for AnimateLCM (Wang et al. 2024, a consistency-distilled AnimateDiff
adapter) with diffusers' LCMScheduler, runs `steps` steps with low guidance at `scale` of the
generation size, and writes drafts/ only. The defaults are the ids of diffusers' AnimateLCM docs;
presets/README.md says which revision is pinned and how it was checked. The backend validates the
same ranges again (inference/draft.py parse).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import model_ids

_MODEL_ID = {"kind": "model_id", "max_length": model_ids.PATH_MAX}
_REVISION = {"kind": "revision", "max_length": model_ids.REVISION_MAX}
# wangfuyun/AnimateLCM's snapshot a public demo script loads (presets/README.md: unverified against the hub).
ANIMATELCM_COMMIT = "6cdc714205bbc04c3b2031ee63725cd6e54dbe56"


def _range(lo=None, hi=None, **extra):
    return {"min": lo, "max": hi, **extra}


@dataclass(frozen=True)
class DraftSettings:
    motion_adapter: str = field(default="wangfuyun/AnimateLCM", metadata=_MODEL_ID)
    motion_adapter_revision: str = field(default=ANIMATELCM_COMMIT, metadata=_REVISION)
    # The LCM LoRA for the base model, from the same repository (diffusers' AnimateLCM docs load it with
    # weight 0.8); "" drafts without it.
    lora: str = field(default="wangfuyun/AnimateLCM", metadata={"max_length": model_ids.PATH_MAX})
    lora_revision: str = field(default=ANIMATELCM_COMMIT, metadata=_REVISION)
    lora_weight_name: str = field(default="AnimateLCM_sd15_t2v_lora.safetensors", metadata={"max_length": 200})
    lora_scale: float = field(default=0.8, metadata=_range(0.0, 1.0))
    # AnimateLCM makes good motion in 4-8 steps; LCM has guidance distilled in, so 1-2 (docs: 1.5).
    steps: int = field(default=6, metadata=_range(4, 8))
    guidance_scale: float = field(default=1.5, metadata=_range(1.0, 2.0))
    # Fraction of [model] width/height; the size is rounded down to a multiple of 8 (`size`).
    scale: float = field(default=0.5, metadata=_range(0.25, 1.0))


SECTIONS = {"draft": DraftSettings}
MIN_SIZE = 32  # pixels per side, as inference/draft.py


def size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The draft's generation size: `scale` of the final's, down to a multiple of 8 (the VAE's factor)."""
    return tuple(max(MIN_SIZE, int(side * scale) // 8 * 8) for side in (width, height))


def cross_checks(preset) -> list[str]:
    """A LoRA named by a hub id or folder needs the weight file's name."""
    draft = preset.draft
    if draft.lora and not draft.lora_weight_name.endswith(".safetensors"):
        return [f"draft.lora_weight_name: {draft.lora_weight_name!r} must name a .safetensors file in "
                f"{draft.lora!r} (Rubble loads safetensors only)"]
    return []
