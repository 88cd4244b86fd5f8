"""Wan2.1-VACE over windows of 4k+1 frames (preset family "wan-vace"): diffusers' WanVACEPipeline
(Apache-2.0), conditioned on a control video made of the shot's control maps and a mask video.

- Control: the one [[controls]] entry's maps (depth, or any other kind) are the VACE control video;
  its `weight` is the pipeline's conditioning_scale. VACE reads the control itself, so the entry's
  `model` and `revision` are not loaded (no ControlNet); guidance_start/end must stay 0 and 1.
- Mask: all ones, "generate everything" (white = generate, black = keep, in diffusers' words).
  Masked regeneration (a [regenerate] section, when it exists) is not read by this family yet.
- Frames: Wan's VAE compresses 4 frames into one latent frame, so a clip has 4k+1 frames. The window
  planner (long_shot.aligned_plan) starts windows on latent boundaries; a short last window is padded
  to 4k+1 frames by repeating its last control frame, and the padding's output is dropped.
- Long shots: diffusers has no FreeNoise for Wan, so only `[long_shot] mode = "windows"`: independent
  windows whose overlapping frames start from the same latent noise and are cross-faded in pixels by
  blend.py (bench/bench_families.py measures the seam with long_shot.seam_ratio).
- Prompt: encoded once per run by diffusers' own WanVACEPipeline.encode_prompt (ftfy text repair,
  512 tokens, zeros past the prompt) and passed to every window as prompt_embeds.

Progress events, cancel (CancelFlag in callback_on_step_end), resume (window records with the hash
of their inputs) and stale_windows work as in the AnimateDiff family (inference/families/common.py).
"""

import dataclasses
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .. import __version__, files, long_shot, memory, models, noise_warp, protocol, windows
from ..cancel import CancelFlag
from ..models import ModelSpec, Source, _weights
from ..protocol import BackendError
from ..shot import Shot
from . import wan_tiny
from .common import (conditioning, control_hashes, model_identity, runtime, step_progress, windows_to_do,
                     with_offload_retry, write_frames, write_record)

LATENT_CHANNELS = 16  # Wan VAE z_dim
VAE_SCALE_FACTOR = 8  # Wan VAE spatial downsampling
FRAMES_PER_LATENT = 4  # Wan VAE temporal downsampling: clips of 4k+1 frames
SIZE_MULTIPLE = 16  # VAE x8 times the transformer's 2x2 patches (WanVACEPipeline.preprocess_conditions)
CONTROL_MODELS = False  # the VACE transformer reads the control video: no per-control weights to load
MAX_SEQUENCE_LENGTH = 512  # WanVACEPipeline's default max_sequence_length (Wan's T5 context)
# diffusers' Wan docs: flow_shift 3.0 for 480p, 5.0 for 720p (UniPCMultistepScheduler).
FLOW_SHIFT_480P, FLOW_SHIFT_720P = 3.0, 5.0
# Wan2.1-VACE-*-diffusers layout (model_index.json + one folder per component); the large weights
# are sharded on the hub (`*.safetensors.index.json` + shards), the tokenizer is T5's.
BASE_FILES = (
    (("transformer/config.json",),),
    _weights("transformer/diffusion_pytorch_model.safetensors", sharded=True),
    (("vae/config.json",),),
    _weights("vae/diffusion_pytorch_model.safetensors", sharded=True),
    (("text_encoder/config.json",),),
    _weights("text_encoder/model.safetensors", sharded=True),
    (("tokenizer/tokenizer.json",), ("tokenizer/spiece.model",)),
    (("scheduler/scheduler_config.json",),),
)
BASE_OPTIONAL = ("model_index.json", "tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json")


def real_spec(model) -> ModelSpec:
    """One repository holds everything (the [model] motion_adapter and the controls' models are not used)."""
    return ModelSpec(smoke_test=False, sources=(Source("base", model.base, model.base_revision, BASE_FILES, BASE_OPTIONAL),))


def tiny_spec(tiny_root: Path, model) -> ModelSpec:
    """The tiny Wan VACE (built on first use, beside the AnimateDiff tiny model), in the same layout."""
    import sys

    location = wan_tiny.directory(tiny_root)
    if not wan_tiny.is_tiny_model(location):
        print(f"Building the tiny Wan VACE model in {location}", file=sys.stderr)
        wan_tiny.build(location)
    return ModelSpec(smoke_test=True,
                     sources=(Source("base", str(location / wan_tiny.BASE), None, BASE_FILES, BASE_OPTIONAL),))


def check(shot: Shot) -> None:
    """Refuse settings this family cannot honour, before any weights load, saying what to set."""
    model, problems = shot.model, []
    if shot.long_shot.mode != "windows":
        problems.append('[long_shot] mode must be "windows": diffusers has no FreeNoise for Wan')
    if model.width % SIZE_MULTIPLE or model.height % SIZE_MULTIPLE:
        problems.append(f"[model] width and height must be multiples of {SIZE_MULTIPLE} (VAE x8, 2x2 patches), "
                        f"not {model.width}x{model.height}")
    if model.window % FRAMES_PER_LATENT != 1:
        below = model.window - (model.window - 1) % FRAMES_PER_LATENT
        problems.append(f"[model] window must be 4k+1 frames (Wan's VAE packs 4 frames per latent): "
                        f"{below} or {below + FRAMES_PER_LATENT}, not {model.window}")
    elif (model.window - model.overlap) % FRAMES_PER_LATENT:
        problems.append(f"[model] window - overlap must be a multiple of {FRAMES_PER_LATENT} so every window starts on "
                        f"a latent frame: overlap {_fitting_overlap(model.window, model.overlap)} "
                        f"would do, not {model.overlap}")
    if len(model.controls) != 1:
        problems.append(f"exactly one [[controls]] entry (the VACE control video), not {len(model.controls)}")
    elif (model.controls[0].guidance_start, model.controls[0].guidance_end) != (0.0, 1.0):
        problems.append("the [[controls]] entry's guidance_start/guidance_end must be 0 and 1 (VACE conditions every step)")
    if shot.noise.mode != "fresh" or shot.noise.motion_lora:
        problems.append('[noise] mode = "fresh" and no motion_lora (warped noise and motion LoRAs are AnimateDiff\'s)')
    if problems:
        raise BackendError(
            "unsupported_setting",
            "The wan-vace family cannot run this preset: " + "; ".join(problems) + ".",
            "Change those keys (presets/wan_vace_1_3b.toml is a working example) and run again.",
        )


def _fitting_overlap(window: int, overlap: int) -> int:
    """The nearest overlap below (else above) `overlap` that makes window - overlap a multiple of 4."""
    short = (window - overlap) % FRAMES_PER_LATENT
    below = overlap - (FRAMES_PER_LATENT - short)
    return below if below >= 0 else overlap + short


def window_inputs(shot: Shot, identity: dict, runtime: dict, controls: dict, window: windows.Window) -> dict:
    """Everything a window's frames depend on; its hash decides whether a rerun may reuse them."""
    frames = shot.frames[window.start : window.stop]
    control = shot.model.controls[0]
    return {
        "family": shot.model.family,
        "code": __version__,
        "model": identity,
        "runtime": runtime,
        "size": [shot.model.width, shot.model.height],
        "look": asdict(shot.look),
        "seed": shot.seed,
        "shot_frames": [shot.frame_start, shot.frame_end],  # the shot noise's shape
        "window": [frames[0], frames[-1]],
        "generated_frames": long_shot.generated_length(window, FRAMES_PER_LATENT),  # with the padding
        "control_sha256": {str(f): controls[f] for f in frames},
        "controls": [{"kind": control.kind, "weight": control.weight}],
        "mask": "ones",  # generate everything
        "flow_shift": flow_shift(shot),
        "long_shot": long_shot.record(shot, False),
        "vae_tiling": shot.memory.vae_tiling,
    }


def stale_windows(shot: Shot, records: dict[int, dict]) -> list[int]:
    """Windows whose record no longer matches the current control maps and preset (as AnimateDiff's)."""
    controls = control_hashes(shot)
    stale = []
    for window in long_shot.plan(shot):
        record = records.get(window.index)
        if record is None:
            continue
        try:
            expected = window_inputs(shot, record["inputs"]["model"], record["inputs"]["runtime"], controls, window)
        except KeyError:
            stale.append(window.index)
            continue
        if files.sha256_json(expected) != record.get("inputs_sha256"):
            stale.append(window.index)
    return stale


def flow_shift(shot: Shot) -> float:
    return FLOW_SHIFT_720P if shot.model.width * shot.model.height >= 1280 * 720 else FLOW_SHIFT_480P


def latent_frames(frames: int) -> int:
    return (frames - 1) // FRAMES_PER_LATENT + 1


def shot_latents(shot: Shot) -> np.ndarray:
    """The shot's initial latents (C, T, h, w) float32, drawn once from the seed on the CPU: one latent
    frame per 4 frames of the plan's span (the last window's padding included). Window w takes latent
    frames start/4 onwards, so overlapping windows start their shared latent frames from the same noise."""
    import torch

    plan = long_shot.plan(shot)
    span = plan[-1].start + long_shot.generated_length(plan[-1], FRAMES_PER_LATENT)
    shape = (1, LATENT_CHANNELS, latent_frames(span), shot.model.height // VAE_SCALE_FACTOR,
             shot.model.width // VAE_SCALE_FACTOR)
    generator = torch.Generator("cpu").manual_seed(shot.seed)
    return torch.randn(shape, generator=generator, dtype=torch.float32)[0].numpy()


def load_pipeline(spec: ModelSpec, device: str, dtype: str | None = None, switches: memory.Memory | None = None):
    """WanVACEPipeline from local files only: transformer and text encoder in `dtype`, the VAE in fp32
    (diffusers' Wan docs load AutoencoderKLWan in float32), the scheduler the repository names."""
    import diffusers
    import torch
    from diffusers import AutoencoderKLWan, WanVACEPipeline, WanVACETransformer3DModel
    from transformers import AutoTokenizer, UMT5EncoderModel

    switches = switches or memory.Memory()
    dtype = getattr(torch, dtype or memory.dtype_name(device, switches))
    base = spec.source("base")

    def load(cls, subfolder: str, **extra):
        local = base.directory
        try:
            return cls.from_pretrained(str(local or base.location), subfolder=subfolder, local_files_only=True,
                                       revision=None if local else base.revision, **extra)
        except (OSError, ValueError) as exc:
            raise BackendError(
                "missing_weights", f"Could not load {subfolder} from {base.location}: {exc}",
                models.download_hint(spec) if not spec.smoke_test
                else f"Delete {Path(base.location).parent} and run again: the tiny Wan VACE is rebuilt.",
            ) from exc

    def weights(subfolder, torch_dtype):
        variant = base.variant(subfolder)
        return {"use_safetensors": True, "torch_dtype": torch_dtype, **({"variant": variant} if variant else {})}

    scheduler_config = base.find("scheduler/scheduler_config.json")
    scheduler_class = getattr(diffusers, json.loads(scheduler_config.read_text(encoding="utf-8"))["_class_name"]) if scheduler_config else None
    if scheduler_class is None:
        raise BackendError("missing_weights", f"No scheduler config in {base.name}.", models.download_hint(spec))
    pipe = WanVACEPipeline(
        tokenizer=load(AutoTokenizer, "tokenizer"),
        text_encoder=load(UMT5EncoderModel, "text_encoder", **weights("text_encoder", dtype)),
        vae=load(AutoencoderKLWan, "vae", **weights("vae", torch.float32)),
        scheduler=load(scheduler_class, "scheduler"),
        transformer=load(WanVACETransformer3DModel, "transformer", **weights("transformer", dtype)),
    )
    pipe.set_progress_bar_config(disable=True)  # progress goes out as protocol events instead
    # WanVACEPipeline has no enable_vae_slicing/tiling (memory.apply's calls): set them on its VAE.
    if switches.vae_slicing:
        pipe.vae.enable_slicing()
    if switches.vae_tiling:
        pipe.vae.enable_tiling()
    return memory.apply(pipe, dataclasses.replace(switches, vae_slicing=False, vae_tiling=False), device)


def run(shot: Shot, spec: ModelSpec, device: str, selected: list[int] | None, cancel: CancelFlag, pipe=None) -> dict:
    """Generate the selected windows (all by default) that are missing or out of date.

    `pipe`: a WanVACEPipeline already loaded with load_pipeline (tests, bench/); loaded here otherwise.
    """
    check(shot)
    plan = long_shot.plan(shot)
    unknown = sorted(set(selected or []) - {w.index for w in plan})
    if unknown:
        raise BackendError("bad_window", f"Windows {unknown} do not exist; this shot has windows 0–{len(plan) - 1}.",
                           "Pick window indices from the plan (python -m inference validate SHOT lists it).")
    chosen = [w for w in plan if selected is None or w.index in selected]

    identity = model_identity(models.describe(spec))
    dtype = memory.dtype_name(device, shot.memory)
    controls = control_hashes(shot)
    todo, skipped = windows_to_do(
        plan, chosen, lambda window: window_inputs(shot, identity, runtime(device, dtype), controls, window), shot.directory)
    if not todo:
        return {"generated": [], "skipped": skipped}

    import torch

    started = time.perf_counter()
    try:
        if pipe is None:
            pipe = load_pipeline(spec, device, dtype, shot.memory)
        _set_flow_shift(pipe, flow_shift(shot))
        prompt, negative = pipe.encode_prompt(
            shot.look.prompt, shot.look.negative_prompt, do_classifier_free_guidance=True,
            max_sequence_length=MAX_SEQUENCE_LENGTH, device=pipe._execution_device, dtype=pipe.transformer.dtype)
    except torch.OutOfMemoryError as exc:
        raise memory.out_of_memory(exc, shot.memory, shot.long_shot.mode, "while loading the model") from exc
    load_seconds = time.perf_counter() - started
    noise = torch.from_numpy(shot_latents(shot))[None]

    steps = shot.look.steps
    total_steps = steps * len(todo)
    generated = []
    offloaded = shot.memory.offload != "none"
    for position, (window, inputs) in enumerate(todo):
        cancel.check()
        frames = shot.frames[window.start : window.stop]
        started = time.perf_counter()

        on_step = step_progress(cancel, window, position * steps, steps, total_steps)
        pixels, retried = with_offload_retry(
            lambda: _window_pixels(pipe, shot, window, frames, noise, prompt, negative, on_step),
            pipe, shot, device, window, offloaded)
        offloaded = offloaded or retried
        write_frames(shot, window, frames, pixels)
        seconds = time.perf_counter() - started
        write_record(
            shot, window, frames, inputs, device,
            seconds=round(seconds, 3),
            model_load_seconds=round(load_seconds, 3),
            latents_sha256=noise_warp.latents_sha256(noise[0, :, _latent_slice(window)].numpy()),
            offload="model" if offloaded and shot.memory.offload == "none" else shot.memory.offload,
            retried_with_offload=retried,
            attention=sorted({type(p).__name__ for p in pipe.transformer.attn_processors.values()}),
        )
        generated.append(window.index)
        protocol.progress("window", window.index + 1, len(plan), f"window {window.index} done in {seconds:.1f} s")
    return {"generated": generated, "skipped": skipped}


def _latent_slice(window: windows.Window) -> slice:
    first = window.start // FRAMES_PER_LATENT
    return slice(first, first + latent_frames(long_shot.generated_length(window, FRAMES_PER_LATENT)))


def _window_pixels(pipe, shot: Shot, window, frames: list[int], noise, prompt, negative, on_step) -> np.ndarray:
    """One WanVACEPipeline call over the window, padded to 4k+1 frames; (F, H, W, 3) in [0, 1], padding dropped."""
    import torch

    length = long_shot.generated_length(window, FRAMES_PER_LATENT)
    control = shot.model.controls[0]
    maps = conditioning(shot, control.kind, frames)
    maps += [maps[-1]] * (length - len(maps))  # the padding repeats the last control frame
    # (1, F, 3, H, W) in [0, 1]: VideoProcessor.preprocess_video takes a 5-D tensor as one video.
    video = torch.from_numpy(np.stack(maps)).permute(0, 3, 1, 2)[None]
    output = pipe(
        prompt_embeds=prompt,
        negative_prompt_embeds=negative,
        video=video,
        mask=torch.ones_like(video),  # white: generate everything
        conditioning_scale=control.weight,
        height=shot.model.height,
        width=shot.model.width,
        num_frames=length,
        num_inference_steps=shot.look.steps,
        guidance_scale=shot.look.guidance_scale,
        latents=noise[:, :, _latent_slice(window)].to(pipe._execution_device),
        output_type="np",
        callback_on_step_end=on_step,
    )
    pixels = np.asarray(output.frames[0][: len(frames)], dtype=np.float32)
    if not np.isfinite(pixels).all():
        bad = [frames[i] for i in range(len(frames)) if not np.isfinite(pixels[i]).all()]
        raise BackendError(
            "non_finite_output",
            f"Window {window.index} (frames {frames[0]}–{frames[-1]}) decoded to NaN/inf pixels in frames {bad}; "
            "nothing of this window was saved.",
            "Set [memory] dtype = \"bf16\" or \"fp32\" (fp16 overflows in Wan's transformer), or lower [look] "
            "guidance_scale; then run generate again: this window is redone.",
        )
    return pixels


def _set_flow_shift(pipe, shift: float) -> None:
    """The scheduler's flow_shift for the generation size, where the scheduler has one (UniPC)."""
    if "flow_shift" in pipe.scheduler.config and pipe.scheduler.config.flow_shift != shift:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, flow_shift=shift)
