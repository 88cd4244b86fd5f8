"""Video-to-video from the clay render (preset `[look] strength`, issue 18 item 3).

strength = 1.0 (the default) is text-to-video, exactly as before: the generation starts from the
shot's initial latents (noise_warp.shot_latents). Below 1.0 it starts from the clay frames
(control/clay/NNNN.png) encoded by the VAE and noised to the strength, so composition and timing
follow the sim, and the denoising runs the last int(steps × strength) of the `steps` timesteps
with diffusers' AnimateDiffVideoToVideoControlNetPipeline, built from the loaded pipeline's
components (`from_pipe`: no weights are loaded or copied).

What the pipeline is given, exactly: that pipeline, called with `video=`, encodes the video and
draws its noise from `generator` (prepare_latents: randn_tensor, then scheduler.add_noise); called
with `latents=` (and enforce_inference_steps=False, its default) it takes them as the already
noised starting point and adds nothing. So the noising is done here, as the pipeline would do it
but with the shot's noise:

    x0     = vae.config.scaling_factor × mean of vae.encode(clay in [-1, 1])     (per frame)
    t0     = the first of the timesteps the pipeline keeps for this strength (its own get_timesteps)
    latent = scheduler.add_noise(x0, noise, t0)    (DDIM: sqrt(ᾱ_t0)·x0 + sqrt(1 − ᾱ_t0)·noise)

`noise` is the window's slice of the shot's initial latents, the same array text-to-video starts
from (fresh, FreeNoise's layout, or flow-warped: preset [noise]), so warped noise still applies.
The VAE posterior's mean (diffusers' retrieve_latents with sample_mode="argmax") rather than a
sample keeps the shot's noise the only randomness. Both long-shot modes work: FreeNoise is set on
the shared motion modules (and its settings copied to the sibling), and the full-length latents are
passed as they are.
"""

import numpy as np

from . import control, files
from .protocol import BackendError
from .shot import Shot

SOURCE = "clay"  # the control map the generation starts from
FAMILIES = ("animatediff-controlnet",)  # families whose pipeline has a video-to-video sibling


def active(shot: Shot) -> bool:
    return shot.look.strength < 1.0


def check(shot: Shot) -> None:
    """Refuse, before any weights load, what video-to-video cannot run."""
    if not active(shot):
        return
    if shot.model.family not in FAMILIES:
        raise BackendError(
            "video_to_video_unsupported",
            f"[look] strength = {shot.look.strength} asks for video-to-video from the clay, which model family "
            f"{shot.model.family!r} does not support here (only {', '.join(FAMILIES)}).",
            "Set [look] strength = 1.0 (text-to-video) or pick a supported [model] family.",
        )
    if denoising_steps(shot) < 1:
        raise BackendError(
            "video_to_video_no_steps",
            f"[look] strength = {shot.look.strength} with [look] steps = {shot.look.steps} leaves no denoising step "
            f"(diffusers runs int(steps × strength) = {denoising_steps(shot)} of them).",
            f"Raise [look] strength to at least {1 / shot.look.steps:.3g} or raise [look] steps.",
        )


def denoising_steps(shot: Shot) -> int:
    """Steps that actually run: AnimateDiffVideoToVideoControlNetPipeline.get_timesteps keeps int(steps × strength)."""
    return min(int(shot.look.steps * shot.look.strength), shot.look.steps)


def pipeline(pipe):
    """The video-to-video sibling of the loaded AnimateDiff + ControlNet pipeline, sharing its modules.

    FreeNoise lives in two places: the shared motion modules (set up by long_shot.prepare on `pipe`)
    and the pipeline's `_free_noise_*` settings, which from_pipe does not copy: they are copied here,
    so `pipe` stays the one that says how its (shared) UNet is set up.
    """
    from diffusers import AnimateDiffVideoToVideoControlNetPipeline

    v2v = AnimateDiffVideoToVideoControlNetPipeline.from_pipe(pipe)
    v2v.set_progress_bar_config(disable=True)
    for name, value in vars(pipe).items():
        if name.startswith("_free_noise_"):
            setattr(v2v, name, value)
    return v2v


def clay_paths(shot: Shot, frames: list[int]) -> list:
    return [control.map_path(shot, SOURCE, frame) for frame in frames]


def inputs(shot: Shot, frames: list[int]) -> dict | None:
    """What a window's frames depend on beyond text-to-video's inputs: None at strength 1.0 (so the
    records of text-to-video shots read as before), else the strength and the clay frames by content."""
    if not active(shot):
        return None
    return {
        "strength": shot.look.strength,
        "source": f"control/{SOURCE}/",
        "clay_sha256": {str(f): files.sha256_file(p) if p.is_file() else None
                        for f, p in zip(frames, clay_paths(shot, frames))},
    }


def provenance(shot: Shot) -> dict:
    if not active(shot):
        return {"strength": 1.0, "mode": "text-to-video"}
    return {
        "strength": shot.look.strength,
        "mode": "video-to-video",
        "source": f"control/{SOURCE}/",
        "denoising_steps": denoising_steps(shot),
        "clay_latent": "VAE posterior mean × scaling_factor",
        "noise": "the shot's initial latents (see \"noise\"), added with the scheduler's add_noise at the first kept timestep",
        "pipeline": "AnimateDiffVideoToVideoControlNetPipeline",
    }


def missing_clay(shot: Shot, frames: list[int]) -> None:
    absent = [f for f, p in zip(frames, clay_paths(shot, frames)) if not p.is_file()]
    if absent:
        raise BackendError(
            "missing_clay",
            f"[look] strength = {shot.look.strength} starts from the clay render, but control/{SOURCE}/ has no frames {absent}.",
            f"Derive the control maps first: python -m inference control {shot.directory}",
        )


def starting_latents(pipe, shot: Shot, frames: list[int], noise):
    """The window's starting point (1, C, F, h, w): its clay frames encoded and noised to the strength
    with `noise` (the window's slice of the shot's latents), in the UNet's dtype on its device."""
    import torch

    from .families.animatediff_controlnet import conditioning

    missing_clay(shot, frames)
    device = pipe._execution_device
    clay = np.stack(conditioning(shot, SOURCE, frames))  # (F, H, W, 3) in [0, 1] at the generation size
    video = torch.from_numpy(clay).permute(0, 3, 1, 2) * 2.0 - 1.0  # the VAE's input range
    vae = pipe.vae
    chunk = shot.model.decode_chunk_size
    with torch.no_grad():
        means = [vae.encode(video[i : i + chunk].to(device=device, dtype=vae.dtype)).latent_dist.mean
                 for i in range(0, len(frames), chunk)]
    clean = (torch.cat(means) * vae.config.scaling_factor).permute(1, 0, 2, 3)[None]  # (1, C, F, h, w)
    pipe.scheduler.set_timesteps(shot.look.steps, device=device)  # as the pipeline's retrieve_timesteps does
    timesteps, _ = pipe.get_timesteps(shot.look.steps, pipe.scheduler.timesteps, shot.look.strength, device)
    noise = noise.to(device=device, dtype=torch.float32)
    noised = pipe.scheduler.add_noise(clean.to(torch.float32), noise, timesteps[:1])
    return noised.to(dtype=pipe.unet.dtype)
