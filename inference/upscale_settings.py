"""The preset's [upscale] table as the backend reads it from shot.json (addon/core/upscale.py
defines and validates it; inference/upscale.py runs the stage)."""

from dataclasses import dataclass

METHODS = ("lanczos", "diffusion")
FORMATS = ("png8", "png16", "exr_half")  # inference/frame_formats.py WRITERS
MAX_NOISE_LEVEL = 350  # StableDiffusionUpscalePipeline's max_noise_level


@dataclass(frozen=True)
class Upscale:
    """The preset's [upscale] table (addon/core/upscale.py); a shot without one gets LANCZOS to PNG."""

    method: str = "lanczos"
    model: str = "stabilityai/stable-diffusion-x4-upscaler"
    revision: str = "572c99286543a273bfd17fac263db5a77be12c4c"
    steps: int = 20
    noise_level: int = 20
    guidance_scale: float = 9.0
    format: str = "png8"


def settings(table: dict | None) -> Upscale:
    """The [upscale] table, validated (missing keys take the defaults)."""
    table = table or {}
    defaults = Upscale()
    up = Upscale(
        method=str(table.get("method", defaults.method)),
        model=str(table.get("model", defaults.model)),
        revision=str(table.get("revision", defaults.revision)),
        steps=int(table.get("steps", defaults.steps)),
        noise_level=int(table.get("noise_level", defaults.noise_level)),
        guidance_scale=float(table.get("guidance_scale", defaults.guidance_scale)),
        format=str(table.get("format", defaults.format)),
    )
    if up.method not in METHODS:
        raise ValueError(f"upscale method {up.method!r} must be one of {METHODS}")
    if up.format not in FORMATS:
        raise ValueError(f"upscale format {up.format!r} must be one of {FORMATS}")
    if up.steps < 1 or not 0 <= up.noise_level <= MAX_NOISE_LEVEL:
        raise ValueError(f"upscale steps {up.steps} must be at least 1 and noise_level {up.noise_level} "
                         f"from 0 to {MAX_NOISE_LEVEL}")
    return up
