"""AnimateDiff + the preset's ControlNets over windows of frames (preset family "animatediff-controlnet").

Every window depends only on the passes (through the control maps), the preset and the shot
seed: the noise for all frames is drawn once from the seed and sliced per window, so windows
can run in any order, on any machine, and a finished window is never redone (resume).
"""

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from .. import (__version__, conditioning_video, files, long_shot, memory, models, noise_warp, pipeline_cache, protocol,
               video_to_video, windows)
from ..cancel import CancelFlag
from ..models import ModelSpec
from ..protocol import BackendError
from ..shot import Shot
from .common import (conditioning, control_frames, control_hashes, model_identity, runtime,  # shared with the other families
                     step_progress, windows_to_do, with_offload_retry)

LATENT_CHANNELS = 4  # SD1.5's VAE latent channels
VAE_SCALE_FACTOR = 8  # SD1.5's VAE downsampling (the tiny model matches it)


# AnimateDiff's v1-5 motion modules were trained on 16-frame clips (Guo et al. 2023, "AnimateDiff",
# implementation details); diffusers' FreeNoise docs: set the context to "the maximum frames the Motion
# Adapter was trained with (usually 16/24/32)". Longer windows run, up to the adapter's positional
# table (motion_max_seq_length), but drift from what the motion prior learned.
TRAINING_FRAMES = 16
# diffusers' MotionAdapter default, for a config.json that does not name it.
DEFAULT_MOTION_MAX_SEQ_LENGTH = 32


def window_inputs(shot: Shot, identity: dict, runtime: dict, controls: dict, window: windows.Window) -> dict:
    """Everything a window's frames depend on; its hash decides whether a rerun may reuse them.

    decode_chunk_size is left out on purpose: it changes memory use, not the frames (tested).
    """
    frames = shot.frames[window.start : window.stop]
    return {
        "family": shot.model.family,
        "code": __version__,
        "model": identity,
        "runtime": runtime,
        "size": [shot.model.width, shot.model.height],
        "look": look_record(shot),
        "seed": shot.seed,
        "shot_frames": [shot.frame_start, shot.frame_end],  # the shot noise's shape
        "window": [frames[0], frames[-1]],
        "control_sha256": {str(f): controls[f] for f in frames},
        "noise": noise_warp.inputs(shot, window.stop - 1),
        # Which maps steer which ControlNet, how hard and when (the weights are in "model", by content).
        "controls": [{"kind": c.kind, "weight": c.weight, "guidance_start": c.guidance_start,
                      "guidance_end": c.guidance_end} for c in shot.model.controls],
        "long_shot": long_shot.record(shot, shot.memory.split_inference),
        "vae_tiling": shot.memory.vae_tiling,  # tiles change the pixels; slicing and offload do not
        **({"video_to_video": video_to_video.inputs(shot, frames)} if video_to_video.active(shot) else {}),
    }


def look_record(shot: Shot) -> dict:
    """[look] as the window inputs record it: strength only below 1.0 (video-to-video), so the records
    of text-to-video shots, made before the key existed, still match."""
    look = asdict(shot.look)
    if not video_to_video.active(shot):
        look.pop("strength")
    return look


def stale_windows(shot: Shot, records: dict[int, dict]) -> list[int]:
    """Windows whose record no longer matches the current control maps and preset.

    Each record's inputs are rebuilt from today's shot (control maps, look, seed, size, frames)
    with the record's own model and runtime; a record of an older format counts as stale.
    """
    plan = long_shot.plan(shot)
    controls = control_hashes(shot)
    stale = []
    for window in plan:
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


def check_window_length(shot: Shot, spec: ModelSpec) -> None:
    """Refuse windows longer than the motion adapter can address, before any weights load."""
    free_noise = shot.long_shot.mode == "free_noise"
    # free_noise: the motion modules see context_length frames at a time, however long the shot.
    longest = long_shot.context_length(shot) if free_noise else max(w.stop - w.start for w in long_shot.plan(shot))
    setting = "[long_shot] context_length" if free_noise else "[model] window"
    value = shot.long_shot.context_length if free_noise else shot.model.window
    adapter = spec.source("motion_adapter")
    limit = int(models.motion_adapter_config(spec).get("motion_max_seq_length", DEFAULT_MOTION_MAX_SEQ_LENGTH))
    if longest > limit:
        raise BackendError(
            "window_too_long",
            f"{setting} = {value} gives windows of {longest} frames, but the motion adapter "
            f"({adapter.location}) supports at most {limit} frames (motion_max_seq_length in its config.json).",
            f"Set {setting} to at most {limit} in the preset ({TRAINING_FRAMES} is what the v1-5 adapters "
            "were trained on); long shots are covered by several windows anyway.",
        )
    if longest > TRAINING_FRAMES:
        protocol.warning(
            "window_above_training_length",
            f"{setting} = {value} gives windows of {longest} frames; the motion adapter was "
            f"trained on {TRAINING_FRAMES}-frame clips, so motion may degrade. {TRAINING_FRAMES} is the safe value.",
        )


def run(shot: Shot, spec: ModelSpec, device: str, selected: list[int] | None, cancel: CancelFlag, pipe=None,
        records: Path | None = None) -> dict:
    """Generate the selected windows (all by default) that are missing or out of date.

    `pipe`: a pipeline already loaded with models.load_pipeline (tests, bench/); loaded here otherwise.
    `records`: the folder whose windows/ holds the window frames and records (default: the shot's own;
    the draft tier passes drafts/, inference/draft.py).
    """
    records = shot.directory if records is None else records
    plan = long_shot.plan(shot)
    unknown = sorted(set(selected or []) - {w.index for w in plan})
    if unknown:
        raise BackendError(
            "bad_window",
            f"Windows {unknown} do not exist; this shot has windows 0–{len(plan) - 1}"
            + (' ([long_shot] mode = "free_noise" makes the whole shot one window)' if shot.long_shot.mode == "free_noise" else "")
            + ".",
            "Pick window indices from the plan (python -m inference validate SHOT lists it).",
        )
    chosen = [w for w in plan if selected is None or w.index in selected]

    check_window_length(shot, spec)
    video_to_video.check(shot)
    motion_lora = noise_warp.motion_lora_file(shot.noise)  # a missing LoRA is an error before any weights load

    # 1. Decide which windows need work.
    identity = model_identity(models.describe(spec))
    dtype = memory.dtype_name(device, shot.memory)
    controls = control_hashes(shot)
    todo, skipped = windows_to_do(
        plan, chosen, lambda window: window_inputs(shot, identity, runtime(device, dtype), controls, window), records)
    if not todo:
        return {"generated": [], "skipped": skipped}

    # 2. Load the model (the slow part on a cold start).
    import torch

    started = time.perf_counter()
    if pipe is None:
        try:
            pipe = pipeline_cache.get(
                pipeline_key(shot, identity, device, dtype, motion_lora),
                lambda: _prepare(models.load_pipeline(spec, device, dtype, shot.memory), shot, motion_lora),
            )
        except torch.OutOfMemoryError as exc:
            raise memory.out_of_memory(exc, shot.memory, shot.long_shot.mode, "while loading the model") from exc
    else:
        _prepare(pipe, shot, motion_lora)
    if video_to_video.active(shot):  # [look] strength < 1: start from the clay (same modules, no new weights)
        pipe = video_to_video.pipeline(pipe)
    load_seconds = time.perf_counter() - started

    # 3. Shot-level initial latents (fresh, as the long-shot mode draws them, or flow-warped: preset
    # [noise]): made once, on the CPU so every device gets the same numbers; `python -m inference
    # noise` writes the same array. FreeNoise keeps full-length latents as they are passed.
    started = time.perf_counter()
    shot_latents = noise_warp.shot_latents(shot)
    noise_seconds = time.perf_counter() - started
    noise = torch.from_numpy(shot_latents)[None]

    # 4. Each window: control frames + its slice of the noise -> frames -> files, record last.
    steps = video_to_video.denoising_steps(shot) if video_to_video.active(shot) else shot.look.steps
    total_steps = steps * len(todo)
    generated = []
    offloaded = shot.memory.offload != "none"
    for position, (window, inputs) in enumerate(todo):
        cancel.check()
        frames = shot.frames[window.start : window.stop]
        started = time.perf_counter()

        on_step = step_progress(cancel, window, position * steps, steps, total_steps)
        pixels_per_frame, retried = with_offload_retry(
            lambda: _window_pixels(pipe, shot, window, frames, noise, on_step), pipe, shot, device, window, offloaded)
        offloaded = offloaded or retried
        for frame, pixels in zip(frames, pixels_per_frame):
            files.write_png(windows.frame_path(records, window, frame), Image.fromarray(pixels))
        seconds = time.perf_counter() - started
        files.write_json(
            windows.record_path(records, window),
            {
                "schema": windows.RECORD_SCHEMA,
                "index": window.index,
                "frames": [frames[0], frames[-1]],
                "inputs_sha256": files.sha256_json(inputs),
                "inputs": inputs,
                "device": device,
                "seconds": round(seconds, 3),
                "model_load_seconds": round(load_seconds, 3),
                "noise_seconds": round(noise_seconds, 4),
                "latents_sha256": noise_warp.latents_sha256(shot_latents[:, window.start : window.stop]),
                "offload": "model" if offloaded and shot.memory.offload == "none" else shot.memory.offload,
                "retried_with_offload": retried,
                "attention": memory.attention_processors(pipe),
            },
        )
        generated.append(window.index)
        protocol.progress("window", window.index + 1, len(plan), f"window {window.index} done in {seconds:.1f} s")
    return {"generated": generated, "skipped": skipped}


def _prepare(pipe, shot: Shot, motion_lora):
    """What a run sets up on a loaded pipeline: fp32 VAE decode, the motion LoRA, FreeNoise (or not)."""
    _upcast_vae(pipe)
    noise_warp.load_motion_lora(pipe, motion_lora)
    long_shot.prepare(pipe, shot, shot.memory.split_inference)
    return pipe


def pipeline_key(shot: Shot, identity: dict, device: str, dtype: str, motion_lora) -> dict:
    """Everything that decides the pipeline `_prepare` leaves behind (inference/pipeline_cache.py): a warm
    backend reuses it only when all of it is unchanged. windows mode has FreeNoise off whatever the window."""
    free_noise = long_shot.record(shot, shot.memory.split_inference) if shot.long_shot.mode == "free_noise" else None
    return {
        "family": shot.model.family,
        "model": identity,
        "controls": [c.kind for c in shot.model.controls],  # which ControlNets, in order (weights by content above)
        "device": device,
        "dtype": dtype,
        "memory": asdict(shot.memory),
        "free_noise": free_noise,
        "motion_lora": None if motion_lora is None else {"path": str(motion_lora),
                                                         "sha256": files.sha256_file(motion_lora)},
    }


def _window_pixels(pipe, shot: Shot, window: windows.Window, frames: list[int], noise, on_step) -> np.ndarray:
    """One pipeline call over the window (the whole shot in free_noise mode), decoded: (F, H, W, 3) uint8.

    Video-to-video ([look] strength < 1, `pipe` is then the video-to-video pipeline): the window's clay,
    noised with the same slice of the shot's noise, is the starting point (inference/video_to_video.py).
    """
    window_noise = noise[:, :, window.start : window.stop]
    if video_to_video.active(shot):
        start = {"latents": video_to_video.starting_latents(pipe, shot, frames, window_noise),
                 "strength": shot.look.strength}
    else:
        # FreeNoise keeps full-length latents as they are, so it is not moved to the device for us.
        start = {"num_frames": len(frames),
                 "latents": window_noise.to(device=pipe._execution_device, dtype=pipe.unet.dtype)}
    output = pipe(
        prompt=shot.look.prompt,
        negative_prompt=shot.look.negative_prompt,
        width=shot.model.width,
        height=shot.model.height,
        num_inference_steps=shot.look.steps,
        guidance_scale=shot.look.guidance_scale,
        **control_arguments(shot, frames, compact=conditioning_video.installed(pipe)),
        **start,
        output_type="latent",  # decoded below: in chunks, upcast, checked before anything is written
        callback_on_step_end=on_step,
    )
    return decode(pipe, output.frames, shot.model.decode_chunk_size, window, frames)


def _upcast_vae(pipe) -> None:
    """Decode in fp32 where the VAE's config asks for it: SD1.5's VAE overflows to inf/NaN in fp16.

    The same test and cast as diffusers' StableDiffusionXLPipeline (`vae.dtype == float16 and
    vae.config.force_upcast` -> `vae.to(torch.float32)`). The VAE only decodes here, so it stays upcast.
    """
    import torch

    if pipe.vae.dtype == torch.float16 and pipe.vae.config.force_upcast:
        pipe.vae.to(torch.float32)


def decode(pipe, latents, chunk_size: int, window: windows.Window, frames: list[int]) -> np.ndarray:
    """Latents (1, C, F, h, w) -> frames (F, H, W, 3) uint8, as the PNGs hold them.

    `chunk_size` frames at a time, each chunk decoded (diffusers' decode_latents) and post-processed
    (its postprocess_video) on its own and kept as 8 bits: no float copy of the whole video is held
    (up to three were: the decode of a 64-frame shot at 512x320 peaked 395 MiB above a 16-frame one's,
    bench/inference_cpu.py memory, tiny model, RSS per phase). Every step is
    per frame, so the 8-bit values are those of the whole video's decode with the same chunk size.
    The VAE treats each frame on its own, so the chunk size changes peak memory, not the frames.
    Non-finite pixels are an error before anything is written: cast to uint8, NaN turns black.
    """
    import torch

    count = latents.shape[2]
    pixels, bad = None, []
    for start in range(0, count, chunk_size):
        with torch.no_grad():  # (1, 3, n, H, W) float32
            video = pipe.decode_latents(latents[:, :, start : start + chunk_size].to(pipe.vae.dtype), chunk_size)
        bad += [frames[start + i] for i in range(video.shape[2]) if not torch.isfinite(video[:, :, i]).all()]
        chunk = pipe.video_processor.postprocess_video(video=video, output_type="np")[0]  # (n, H, W, 3) in [0, 1]
        if pixels is None:
            pixels = np.empty((count, *chunk.shape[1:]), np.uint8)
        pixels[start : start + len(chunk)] = np.round(np.clip(chunk, 0.0, 1.0) * 255.0)
        del video, chunk
    if bad:
        raise BackendError(
            "non_finite_output",
            f"Window {window.index} (frames {frames[0]}–{frames[-1]}) decoded to NaN/inf pixels in frames {bad} "
            f"(UNet {str(pipe.unet.dtype).removeprefix('torch.')}, VAE {str(pipe.vae.dtype).removeprefix('torch.')}); "
            "nothing of this window was saved.",
            "An fp16 VAE overflows: decode in fp32 (set force_upcast: true in the VAE's config.json, or run with "
            "--device cpu, which is fp32 throughout); a very high [look] guidance_scale can also blow up the "
            "latents, so lower it. Then run generate again: this window is redone.",
        )
    return pixels


def control_arguments(shot: Shot, frames: list[int], compact: bool = False) -> dict:
    """The pipeline's ControlNet arguments for `frames`: per [[controls]] entry, in preset order (the
    order of models.controlnets()), its conditioning video, weight and guidance start/end.

    `compact`: each video as conditioning_video.Frames (8-bit or depth's grey, made float per chunk of
    frames by the split ControlNets), for a pipeline that takes them (conditioning_video.installed);
    else float [0, 1] frames, as any diffusers pipeline takes them."""
    controls = shot.model.controls
    videos = ([conditioning_video.Frames(control_frames(shot, c.kind, frames)) for c in controls] if compact
              else [conditioning(shot, c.kind, frames) for c in controls])
    return {
        "conditioning_frames": videos,
        "controlnet_conditioning_scale": [c.weight for c in controls],
        "control_guidance_start": [c.guidance_start for c in controls],
        "control_guidance_end": [c.guidance_end for c in controls],
    }
