"""Model families (preset `[model] family`) and the rules each puts on the other keys.

The backend has one module per family (inference/families/); these are the add-on's checks of the
same rules, so a preset a family cannot run is refused when it is loaded, not after the passes
were rendered. bpy-free.
"""
from __future__ import annotations

FAMILIES = ("animatediff-controlnet", "wan-vace")
# AnimateDiff's motion modules address at most 32 frames (motion_max_seq_length; the backend reads
# the adapter's own value); 64 was this key's maximum before Wan, kept for that family.
ANIMATEDIFF_MAX_WINDOW = 64
# Wan2.1's VAE packs 4 frames into a latent frame (clips of 4k+1 frames) and downsamples by 8, and
# its transformer takes 2x2 patches: sizes are multiples of 16 (WanVACEPipeline).
WAN_FRAMES_PER_LATENT = 4
WAN_SIZE_MULTIPLE = 16


def cross_checks(preset) -> list[str]:
    """What `[model] family` rules out in the rest of an otherwise valid preset."""
    model = preset.model
    if model.family == "animatediff-controlnet":
        if model.window > ANIMATEDIFF_MAX_WINDOW:
            return [f"model.window: {model.window} is above the maximum {ANIMATEDIFF_MAX_WINDOW} for family "
                    "'animatediff-controlnet' (its motion modules see at most 32 frames)"]
        return []
    problems = []
    f = WAN_FRAMES_PER_LATENT
    if model.width % WAN_SIZE_MULTIPLE or model.height % WAN_SIZE_MULTIPLE:
        problems.append(f"model.width/height: {model.width}x{model.height} must be multiples of {WAN_SIZE_MULTIPLE} "
                        "for family 'wan-vace' (VAE x8 and 2x2 patches)")
    if model.window % f != 1:
        below = model.window - (model.window - 1) % f
        problems.append(f"model.window: {model.window} must be 4k+1 frames for family 'wan-vace' (its VAE packs "
                        f"{f} frames per latent), e.g. {below} or {below + f}")
    elif (model.window - model.overlap) % f:
        problems.append(f"model.overlap: window - overlap ({model.window} - {model.overlap}) must be a multiple of {f} "
                        f"for family 'wan-vace' (windows start on latent frames), e.g. overlap "
                        f"{fitting_overlap(model.window, model.overlap)}")
    if preset.long_shot.mode != "windows":
        problems.append(f"long_shot.mode: {preset.long_shot.mode!r} is not available for family 'wan-vace' "
                        "(diffusers has no FreeNoise for Wan); set \"windows\"")
    if len(preset.controls) != 1:
        problems.append(f"controls: family 'wan-vace' takes exactly one [[controls]] entry (its control video), "
                        f"not {len(preset.controls)}")
    elif (preset.controls[0].guidance_start, preset.controls[0].guidance_end) != (0.0, 1.0):
        problems.append("controls: family 'wan-vace' conditions every step; leave guidance_start = 0 and guidance_end = 1")
    if preset.noise.mode != "fresh" or preset.noise.motion_lora:
        problems.append("noise: family 'wan-vace' takes mode = \"fresh\" and no motion_lora (both are AnimateDiff's)")
    return problems


def fitting_overlap(window: int, overlap: int) -> int:
    """The nearest overlap below (else above) `overlap` that makes window - overlap a multiple of 4."""
    short = (window - overlap) % WAN_FRAMES_PER_LATENT
    below = overlap - (WAN_FRAMES_PER_LATENT - short)
    return below if below >= 0 else overlap + short
