"""The preset's `[upscale]` section: how generated frames reach `[shot].resolution`, and the aspect rule.

The backend (inference/upscale.py) reads the same keys from shot.json and checks them again.
"lanczos" is the cheap resize Rubble always did; "diffusion" runs diffusers'
StableDiffusionUpscalePipeline (x4, text-guided) and then resizes exactly to the shot's size.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import model_ids

# StableDiffusionUpscalePipeline's max_noise_level (its __init__ default and the x4 upscaler's
# model_index.json): the pipeline refuses a larger noise_level.
MAX_NOISE_LEVEL = 350
FORMATS = ("png8", "png16", "exr_half")


def _range(lo=None, hi=None, **extra):
    return {"min": lo, "max": hi, **extra}


@dataclass(frozen=True)
class UpscaleSettings:
    # lanczos: a plain resize (cheap, no new detail); diffusion: the x4 diffusion upscaler first.
    method: str = field(default="lanczos", metadata={"choices": ("lanczos", "diffusion")})
    # The commit was found in two public Hugging Face cache paths, not downloaded here (presets/README.md).
    model: str = field(default="stabilityai/stable-diffusion-x4-upscaler",
                       metadata={"kind": "model_id", "max_length": model_ids.PATH_MAX})
    revision: str = field(default="572c99286543a273bfd17fac263db5a77be12c4c",
                          metadata={"kind": "revision", "max_length": model_ids.REVISION_MAX})
    steps: int = field(default=20, metadata=_range(1, 200))
    # Noise added to the low-resolution frame: more lets the upscaler invent more detail (and drift).
    noise_level: int = field(default=20, metadata=_range(0, MAX_NOISE_LEVEL, max_why="the upscaler's max_noise_level"))
    guidance_scale: float = field(default=9.0, metadata=_range(0.0, 30.0))  # the pipeline's default
    # png8: frames/ only; png16 / exr_half: also frames_png16/ or frames_exr_half/ for compositing.
    format: str = field(default="png8", metadata={"choices": FORMATS})


SECTIONS = {"upscale": UpscaleSettings}
