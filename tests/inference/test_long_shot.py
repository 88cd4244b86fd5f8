"""Long shots and memory: both modes against the plain diffusers call, SIGTERM and kill -9 with real
subprocesses, and the out-of-memory advice and retry raised from a real forward hook.

Kept cheap (CI budget): 64x48 generation, one subprocess per scenario that needs one, the rest in process."""

import dataclasses
import io
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import OutOfMemoryHook, REPO, make_shot, run_backend

SIZE = {"size": (64, 48), "model": {"width": 64, "height": 48}}  # the shot's size = the model's: no resize
FREE_NOISE = {"mode": "free_noise", "context_length": 4, "context_stride": 2}


def _default_controls():
    import tomllib

    from inference import shot as shot_module

    preset = tomllib.loads((REPO / "presets" / "default.toml").read_text(encoding="utf-8"))
    return shot_module.model_settings(preset["model"], shot_module.preset_controls(preset)).controls


DEFAULT_CONTROLS = _default_controls()  # make_shot's: the default preset's depth + normal


def frames(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


@pytest.fixture(scope="module")
def quiet_in_process():
    """In-process runs: events into a buffer, and pytest's own SIGINT/SIGTERM handlers back afterwards
    (CancelFlag installs its own)."""
    from inference import protocol

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stream, protocol._stream = protocol._stream, io.StringIO()
    yield protocol._stream
    protocol._stream = stream
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def run_in_process(shot_dir: Path, tiny_model: Path, pipe=None):
    from inference import control, models
    from inference.families import animatediff_controlnet
    from inference import shot as shot_module
    from inference.cancel import CancelFlag

    shot = shot_module.load(shot_dir)
    control.derive(shot, shot.frames)
    spec = models.tiny_spec(tiny_model, shot.model.controls)
    return animatediff_controlnet.run(shot, spec, "cpu", None, CancelFlag(shot_dir), pipe=pipe)


def plain_diffusers_frames(tiny_model: Path, shot_dir: Path, window: slice | None = None, free_noise: dict | None = None,
                           split_sizes: tuple[int, int] = (256, 16)):
    """The plain diffusers recipe on the shot's inputs: AnimateDiffControlNetPipeline built from the SD1.5
    components + the motion adapter (the pipeline makes the motion UNet itself), FreeNoise and its split
    inference enabled as diffusers' docs do, the seed as a CPU generator (free_noise) or our documented shot
    noise sliced (windows), the control maps as conditioning frames; uint8 as our PNGs are."""
    import torch
    from diffusers import (AnimateDiffControlNetPipeline, AutoencoderKL, ControlNetModel, DDIMScheduler,
                           MotionAdapter, MultiControlNetModel, UNet2DConditionModel)
    from transformers import CLIPTextModel, CLIPTokenizer

    from inference.families import animatediff_controlnet
    from inference import shot as shot_module
    from inference import tiny_model as tiny

    shot = shot_module.load(shot_dir)
    base = str(tiny_model / "base")
    pipe = AnimateDiffControlNetPipeline(
        vae=AutoencoderKL.from_pretrained(base, subfolder="vae"),
        text_encoder=CLIPTextModel.from_pretrained(base, subfolder="text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(base, subfolder="tokenizer"),
        unet=UNet2DConditionModel.from_pretrained(base, subfolder="unet"),
        motion_adapter=MotionAdapter.from_pretrained(str(tiny_model / "motion_adapter")),
        controlnet=MultiControlNetModel([ControlNetModel.from_pretrained(str(tiny_model / tiny.controlnet_folder(c.kind)))
                                         for c in shot.model.controls]),
        scheduler=DDIMScheduler.from_pretrained(base, subfolder="scheduler", clip_sample=False,
                                                timestep_spacing="linspace", beta_schedule="linear", steps_offset=1),
    )
    pipe.set_progress_bar_config(disable=True)
    frame_numbers = shot.frames[window] if window else shot.frames
    if free_noise is not None:
        pipe.enable_free_noise(**free_noise)
        pipe.enable_free_noise_split_inference(*split_sizes)
        noise = {"generator": torch.Generator("cpu").manual_seed(shot.seed)}
    else:
        latents = torch.randn((1, 4, len(shot.frames), 6, 8), generator=torch.Generator("cpu").manual_seed(shot.seed))
        noise = {"latents": latents[:, :, window]}
    video = pipe(
        prompt=shot.look.prompt, negative_prompt=shot.look.negative_prompt, num_frames=len(frame_numbers),
        width=64, height=48, num_inference_steps=shot.look.steps, guidance_scale=shot.look.guidance_scale,
        **animatediff_controlnet.control_arguments(shot, frame_numbers),
        decode_chunk_size=shot.model.decode_chunk_size, output_type="np", **noise,
    ).frames[0]
    return np.round(np.clip(video, 0, 1) * 255).astype(np.uint8)


# -- free_noise ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def free_noise_shot(tmp_path_factory, tiny_model, quiet_in_process):
    """7 frames, context 4, stride 2: FreeNoise's context windows (0-3), (2-5) and the moved-back (3-6).
    In process, as `generate` runs it (the add-on's end-to-end tests run the default free_noise mode
    through the command line)."""
    from inference import blend, models, provenance, upscale
    from inference import shot as shot_module

    shot = make_shot(tmp_path_factory.mktemp("fn") / "shot", frames=7, long_shot=FREE_NOISE, **SIZE)
    done = run_in_process(shot, tiny_model)
    loaded = shot_module.load(shot)
    provenance.write(loaded, models.describe(models.tiny_spec(tiny_model, loaded.model.controls)))
    blend.run(loaded)
    upscale.run(loaded)  # [upscale] method lanczos: blended/ -> frames/ at the shot's resolution
    return shot, done


def test_free_noise_is_one_pass_recorded_in_provenance(free_noise_shot):
    shot, done = free_noise_shot
    assert done == {"generated": [0], "skipped": []}
    assert len(list((shot / "windows" / "000").glob("*.png"))) == 7, "one window: the whole shot"
    provenance = json.loads((shot / "provenance.json").read_text())
    assert provenance["long_shot"] == {
        "mode": "free_noise", "context_length": 4, "context_stride": 2, "weighting_scheme": "pyramid",
        "noise_type": "shuffle_context", "split_inference": {"spatial_split_size": 256, "temporal_split_size": 16, "controlnets": "temporal chunks"},
    }
    assert provenance["memory"] == {"dtype": "auto", "vae_slicing": False, "vae_tiling": False, "offload": "none",
                                    "split_inference": True, "retry_with_offload": True}
    (window,) = provenance["windows"]
    assert window["dtype"] == "float32" and window["offload"] == "none" and window["retried_with_offload"] is False
    assert window["attention"] == ["AttnProcessor2_0"], "attention runs through PyTorch SDPA"


def test_free_noise_equals_the_plain_diffusers_call_bit_for_bit(free_noise_shot, tiny_model):
    shot, _ = free_noise_shot
    plain = plain_diffusers_frames(tiny_model, shot, free_noise={"context_length": 4, "context_stride": 2})
    assert np.array_equal(frames(shot / "frames"), plain)


def test_split_inference_runs_the_controlnets_in_chunks_of_frames_with_the_same_frames(tmp_path, tiny_model,
                                                                                       quiet_in_process):
    """7 frames x 2 (guidance) = 14 ControlNet batch items, temporal_split_size 4: each ControlNet runs 4
    times a step (4 + 4 + 4 + 2), never over all frames at once (the memory peak of long shots). The frames
    match the plain diffusers call with split inference (256, 4) to within one 8-bit level: a chunk's
    matrix products round differently from the whole batch's on the CPU (oneDNN/MKL pick kernels by the
    batch size: the time embedding's Linear already differs by 1.2e-7), so bit-identity cannot hold."""
    import torch

    from inference import models

    split = {**FREE_NOISE, "temporal_split_size": 4}
    shot = make_shot(tmp_path / "shot", frames=7, long_shot=split, **SIZE)
    pipe = models.load_pipeline(models.tiny_spec(tiny_model, DEFAULT_CONTROLS), "cpu")
    batches, conditioning = [], []
    for net in pipe.controlnet.nets:  # its first layers see each chunk, of latents and of conditioning frames
        net.conv_in.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
        net.controlnet_cond_embedding.register_forward_pre_hook(
            lambda module, args: conditioning.append((args[0].shape[0], args[0].dtype)))
    run_in_process(shot, tiny_model, pipe=pipe)
    steps = 2  # make_shot's look
    assert batches == [4, 4, 4, 2] * len(DEFAULT_CONTROLS) * steps
    assert [n for n, _ in conditioning] == batches and {d for _, d in conditioning} == {torch.float32}
    ours = frames(shot / "windows" / "000").astype(int)
    plain = plain_diffusers_frames(tiny_model, shot, free_noise={"context_length": 4, "context_stride": 2},
                                   split_sizes=(256, 4)).astype(int)
    assert np.abs(ours - plain).max() <= 1


def test_a_free_noise_run_holds_its_conditioning_videos_compact_and_makes_them_float_per_chunk(
        tmp_path, tiny_model, quiet_in_process):
    """diffusers' prepare_video holds each control video as float32 at full length, twice (guidance): the
    part of a long shot's peak memory that grew with its length. With split inference the ControlNets get
    the frames as read (conditioning_video.Video: 8-bit RGB, depth's float grey), and every chunk they
    see holds exactly the values prepare_video would have given (same dtype, contiguous)."""
    import torch

    from inference import conditioning_video, control, models
    from inference.families import animatediff_controlnet
    from inference import shot as shot_module

    # The passes at 80x60 are resized to the 64x48 generation size, so the resize is part of what is compared.
    shot_dir = make_shot(tmp_path / "shot", frames=5, size=(80, 60), model=SIZE["model"], look={"steps": 1},
                         long_shot={**FREE_NOISE, "temporal_split_size": 4})
    shot = shot_module.load(shot_dir)
    control.derive(shot, shot.frames)
    pipe = models.load_pipeline(models.tiny_spec(tiny_model, DEFAULT_CONTROLS), "cpu")
    plain = [pipe.prepare_video(video, 64, 48, 5, 1, torch.device("cpu"), torch.float32, True)
             for video in animatediff_controlnet.control_arguments(shot, shot.frames)["conditioning_frames"]]

    held, chunks = [], []
    pipe.controlnet.register_forward_pre_hook(lambda module, args, kwargs: held.extend(kwargs["controlnet_cond"]),
                                              with_kwargs=True)
    for net in pipe.controlnet.nets:
        net.controlnet_cond_embedding.register_forward_pre_hook(lambda module, args: chunks.append(args[0]))
    run_in_process(shot_dir, tiny_model, pipe=pipe)

    assert all(isinstance(video, conditioning_video.Video) for video in held), [type(v) for v in held]
    depth, normal = held[:2]  # DEFAULT_CONTROLS' order
    assert depth.frames[0].shape == (48, 64) and depth.frames[0].dtype == np.float32
    assert normal.frames[0].shape == (48, 64, 3) and normal.frames[0].dtype == np.uint8
    full = sum(video.element_size() * video.numel() for video in plain)
    assert sum(frame.nbytes for video in held[:2] for frame in video.frames) * 6 <= full
    # 10 batch items (5 frames x 2 for guidance) in chunks of 4, 4, 2, per ControlNet, in one step.
    assert len(chunks) == 6
    for video, made in ((depth, chunks[0:3]), (normal, chunks[3:6])):
        expected = plain[held.index(video)]
        assert [len(c) for c in made] == [4, 4, 2]
        for start, chunk in zip((0, 4, 8), made):
            assert chunk.is_contiguous() and torch.equal(chunk, expected[start : start + len(chunk)])
        assert torch.equal(video.batch(0, 10), expected)


def test_free_noise_settings_are_part_of_the_window_inputs(free_noise_shot):
    from inference import windows
    from inference.families import animatediff_controlnet
    from inference import shot as shot_module

    shot = shot_module.load(free_noise_shot[0])
    records = {0: windows.read_record(shot.directory, windows.Window(0, 0, 7))}
    assert animatediff_controlnet.stale_windows(shot, records) == []
    for change in ({"context_stride": 3}, {"weighting_scheme": "flat"}, {"noise_type": "random"}):
        changed = dataclasses.replace(shot, long_shot=dataclasses.replace(shot.long_shot, **change))
        assert animatediff_controlnet.stale_windows(changed, records) == [0], change
    tiled = dataclasses.replace(shot, memory=dataclasses.replace(shot.memory, vae_tiling=True))
    assert animatediff_controlnet.stale_windows(tiled, records) == [0], "VAE tiling changes the pixels"
    sliced = dataclasses.replace(shot, memory=dataclasses.replace(shot.memory, vae_slicing=True, offload="model"))
    assert animatediff_controlnet.stale_windows(sliced, records) == [], "slicing and offload change no pixel"


# -- windows --------------------------------------------------------------------------------------------------

STEPS = 8  # enough to act in the middle of a window


@pytest.fixture(scope="module")
def windows_pipe(tiny_model):
    from inference import models

    return models.load_pipeline(models.tiny_spec(tiny_model, DEFAULT_CONTROLS), "cpu")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model, windows_pipe, quiet_in_process):
    """4 frames, windows of 2 sharing 1 -> windows (1-2), (2-3), (3-4), run in this process, then blended."""
    from inference import blend, upscale
    from inference import shot as shot_module

    shot = make_shot(tmp_path_factory.mktemp("whole") / "shot", look={"steps": STEPS}, **SIZE)
    assert run_in_process(shot, tiny_model, windows_pipe)["generated"] == [0, 1, 2]
    blend.run(shot_module.load(shot))
    upscale.run(shot_module.load(shot))
    return shot


def test_a_window_equals_the_plain_diffusers_call_on_its_slice_of_the_shot_noise(uninterrupted, tiny_model):
    plain = plain_diffusers_frames(tiny_model, uninterrupted, window=slice(1, 3))
    assert np.array_equal(frames(uninterrupted / "windows" / "001"), plain)


def start(shot: Path, tiny_model: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "inference", "generate", str(shot), "--tiny-model", str(tiny_model)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )


def read_until(proc: subprocess.Popen, message: str, events: list) -> None:
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1].get("message") == message:
            return
    raise AssertionError(f"{message!r} never came: {events[-3:]}")


def test_kill_9_in_window_2_then_a_rerun_keeps_window_1_and_equals_an_uninterrupted_run(uninterrupted, tmp_path, tiny_model):
    shot = make_shot(tmp_path / "shot", look={"steps": STEPS}, **SIZE)
    proc = start(shot, tiny_model)
    read_until(proc, f"window 1 step 1/{STEPS}", [])  # the second of three windows (indices from 0)
    proc.kill()  # SIGKILL: no handler runs, nothing is cleaned up
    proc.wait(timeout=60)
    proc.stdout.close()
    record = shot / "windows" / "000" / "record.json"
    assert record.is_file() and not (shot / "windows" / "001" / "record.json").exists()
    kept_at = record.stat().st_mtime_ns

    run = run_backend("generate", str(shot), "--tiny-model", str(tiny_model))
    assert run.returncode == 0, run.stderr
    (result,) = run.of_type("result")
    assert result["windows_skipped"] == [0] and result["windows_generated"] == [1, 2], "window 0 is not recomputed"
    assert record.stat().st_mtime_ns == kept_at
    assert np.array_equal(frames(shot / "frames"), frames(uninterrupted / "frames"))


def test_sigterm_stops_after_the_current_step_and_keeps_finished_windows(uninterrupted, tmp_path, tiny_model):
    shot = make_shot(tmp_path / "shot", look={"steps": STEPS}, **SIZE)
    shutil.copytree(uninterrupted / "windows" / "000", shot / "windows" / "000")  # finished earlier: skipped
    proc = start(shot, tiny_model)
    events = []
    read_until(proc, f"window 1 step 1/{STEPS}", events)
    proc.send_signal(signal.SIGTERM)
    events += [json.loads(line) for line in proc.stdout]
    assert proc.wait(timeout=60) == 130
    steps = [e["message"] for e in events if e["type"] == "progress" and e["stage"] == "generate"]
    assert steps[-1].startswith("window 1 step ") and steps[-1] != f"window 1 step {STEPS}/{STEPS}", (
        f"stopped between steps, before the window's end: {steps}"
    )
    (cancelled,) = [e for e in events if e["type"] == "cancelled"]
    assert cancelled["kept"] == ["windows/000"]
    assert len(list((shot / "windows" / "000").glob("*.png"))) == 2
    assert not (shot / "windows" / "001" / "record.json").exists()
    assert not list((shot / "windows").glob("001/*.png")), "nothing of the unfinished window is written"


# -- out of memory --------------------------------------------------------------------------------------------


def fresh_pipe(tiny_model: Path):
    from inference import models

    return models.load_pipeline(models.tiny_spec(tiny_model, DEFAULT_CONTROLS), "cpu")


def set_memory(shot: Path, **memory) -> None:
    data = json.loads((shot / "shot.json").read_text())
    data["preset"]["memory"] = memory
    (shot / "shot.json").write_text(json.dumps(data))


def test_out_of_memory_retries_once_with_offload_and_records_it(tmp_path, tiny_model, windows_pipe, quiet_in_process):
    clean = make_shot(tmp_path / "clean", frames=2, **SIZE)
    run_in_process(clean, tiny_model, windows_pipe)
    shot = make_shot(tmp_path / "shot", frames=2, **SIZE)
    pipe = fresh_pipe(tiny_model)  # the retry puts offload hooks on it
    hook = OutOfMemoryHook(pipe, failures=1)
    start = quiet_in_process.tell()
    run_in_process(shot, tiny_model, pipe)
    assert hook.calls == 3, "the failed call, then the window's 2 steps again"
    events = [json.loads(line) for line in quiet_in_process.getvalue()[start:].splitlines()]
    assert [e["code"] for e in events if e["type"] == "warning"] == ["out_of_memory_retry"]
    record = json.loads((shot / "windows" / "000" / "record.json").read_text())
    assert record["retried_with_offload"] is True and record["offload"] == "model"
    assert np.array_equal(frames(shot / "windows" / "000"), frames(clean / "windows" / "000")), "offload changes no pixel"


def test_out_of_memory_names_the_switches_that_would_help(tmp_path, tiny_model, quiet_in_process):
    from inference.protocol import BackendError

    shot = make_shot(tmp_path / "shot", frames=2, long_shot={"mode": "free_noise"}, **SIZE)
    set_memory(shot, retry_with_offload=False, split_inference=False)
    pipe = fresh_pipe(tiny_model)
    hook = OutOfMemoryHook(pipe, failures=1)
    with pytest.raises(BackendError) as error:
        run_in_process(shot, tiny_model, pipe)
    assert hook.calls == 1, "no retry when the preset forbids it"
    assert error.value.code == "out_of_memory" and "window 0 (frames 1–2)" in error.value.message
    for switch in ('offload = "model"', 'offload = "sequential"', "split_inference = true", "vae_slicing = true",
                   "vae_tiling = true", 'dtype = "fp16" or "bf16"'):
        assert switch in error.value.hint
    assert not (shot / "windows" / "000" / "record.json").exists()

    set_memory(shot, split_inference=False)  # retry allowed, but even with offload the GPU is too small
    hook.failures = 2
    with pytest.raises(BackendError) as error:
        run_in_process(shot, tiny_model, pipe)
    assert hook.calls == 3, "exactly one retry"
    assert "also after retrying with model CPU offload" in error.value.message and "already retried" in error.value.hint


# -- settings and device ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("table", "words"), [
    ({"long_shot": {"mode": "sliding"}}, "long_shot mode 'sliding'"),
    ({"long_shot": {"context_stride": 20}}, "context_stride 20"),
    ({"memory": {"offload": "disk"}}, "memory offload 'disk'"),
    ({"memory": {"vae_slicing": "yes"}}, "memory vae_slicing must be true or false"),
])
def test_bad_long_shot_and_memory_settings_are_refused(tmp_path, table, words):
    shot = make_shot(tmp_path / "shot", frames=2)
    data = json.loads((shot / "shot.json").read_text())
    for section, values in table.items():
        data["preset"][section].update(values)
    (shot / "shot.json").write_text(json.dumps(data))
    run = run_backend("validate", str(shot))
    assert run.returncode == 1
    (error,) = run.of_type("error")
    assert error["code"] == "invalid_shot" and words in error["message"]


def test_device_order_cuda_mps_cpu_and_bf16_where_supported(monkeypatch):
    # This machine has neither GPU: torch's own availability checks answer as each machine would.
    import torch

    from inference import memory

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert memory.pick_device(None) == "mps"
    assert memory.dtype_name("mps") == "float16" and memory.dtype_name("cpu") == "float32"
    assert memory.dtype_name("cpu", memory.Memory(dtype="bf16")) == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert memory.pick_device(None) == "cuda"
    for supported, name in ((True, "bfloat16"), (False, "float16")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda supported=supported: supported)
        assert memory.dtype_name("cuda") == name
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert memory.pick_device(None) == "cpu"
    with pytest.raises(Exception, match="--device mps was asked for"):
        memory.pick_device("mps")
