"""Time and measure the backend on this machine's CPU. Prints one JSON line per measurement.

  modes     tiny model: `generate` of 24 frames at 512x320, 20 steps, in each [long_shot] mode (s/frame)
  seams     tiny model: the seam metric (inference/long_shot.py seam_ratio) of free_noise, of windows with
            today's pixel cross-fade, and of windows blended in latent space before decoding
  overhead  SD1.5-shaped random weights, 256x160, 8 frames, 2 steps: our run() against the bare
            diffusers call on the same inputs and the same loaded pipeline (target: <= 3 %)
  memory    SD1.5-shaped random weights, 128x80, 1 step, free_noise + split inference: peak RSS of a
            16-frame and a 64-frame shot, each in a fresh process (target: <= 10 % apart); and 64 frames
            without split inference for comparison. The README's figure: memory --model tiny --size 512x320
            (the tiny model weighs nothing, so all of the growth with the shot shows)

Run: .venv-inference/bin/python bench/inference_cpu.py [modes seams overhead memory] [--model sd15|tiny]
     [--size WxH] [--frames N] [--steps N] [--repeats N] [--threads N]   (default: all four, SD1.5-shaped at the sizes above)
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "inference"))
from conftest import make_shot  # noqa: E402  (the synthetic Blender-layout shot the tests use)

# The overhead and memory figures use one depth ControlNet, as SD1.5-shaped weights are heavy here.
DEPTH_ONLY = [{"kind": "depth", "model": "lllyasviel/control_v11f1p_sd15_depth", "revision": "main"}]


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def quiet_events() -> None:
    """run() in this process: its progress events would mix with the figures on stdout."""
    import io

    from inference import protocol

    protocol._stream = io.StringIO()


def backend(*args: str) -> tuple[float, dict]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "inference", *args], cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return seconds, [json.loads(line) for line in proc.stdout.splitlines()][-1]


def tiny(tmp: Path) -> Path:
    out = tmp / "tiny"
    if not out.exists():
        seconds, _ = backend("tiny-model", str(out))
        emit(what="tiny-model build", seconds=round(seconds, 1))
    return out


def modes(tmp: Path) -> None:
    model = tiny(tmp)
    for mode in ("free_noise", "windows"):
        shot = make_shot(tmp / f"modes-{mode}", frames=24, size=(320, 192), look={"steps": 20},
                         model={"width": 512, "height": 320, "window": 16, "overlap": 4}, long_shot={"mode": mode})
        seconds, result = backend("generate", str(shot), "--tiny-model", str(model))
        emit(what=f"tiny model, {mode}, 24 frames, 512x320, 20 steps, CPU", seconds=round(seconds, 1),
             seconds_per_frame=round(result["timings"]["windows"] / 24, 3), stages=result["timings"])


def seams(tmp: Path) -> None:
    """24 frames at 128x80, 6 steps. windows mode: windows of 8 sharing 2; free_noise: context 8, stride 4.
    Four ways to make the shot, measured on the same boundaries (the windows' overlaps)."""
    import torch
    from PIL import Image

    from inference import long_shot, models, windows
    from inference.families import animatediff_controlnet
    from inference import shot as shot_module

    model = tiny(tmp)
    settings = {"frames": 24, "size": (128, 80), "look": {"steps": 6}, "model": {"window": 8, "overlap": 2}}
    results = {}
    for mode in ("free_noise", "windows"):
        shot_dir = make_shot(tmp / f"seams-{mode}", **settings,
                             long_shot={"mode": mode, "context_length": 8, "context_stride": 4})
        backend("generate", str(shot_dir), "--tiny-model", str(model))
        results[mode] = np.stack([np.asarray(Image.open(p), dtype=np.float64)
                                  for p in sorted((shot_dir / "frames").glob("*.png"))])
    shot = shot_module.load(tmp / "seams-windows")
    pipe = models.load_pipeline(models.tiny_spec(model, shot.model.controls), "cpu")
    plan = long_shot.plan(shot)
    shared = long_shot.shot_noise(shot, (1, 4, 24, 10, 16))

    def window_latents(window, noise):
        frames = shot.frames[window.start : window.stop]
        return pipe(prompt=shot.look.prompt, negative_prompt=shot.look.negative_prompt, num_frames=len(frames),
                    width=128, height=80, num_inference_steps=shot.look.steps, guidance_scale=shot.look.guidance_scale,
                    **animatediff_controlnet.control_arguments(shot, frames),
                    latents=noise, output_type="latent").frames

    def decoded(latents):
        return animatediff_controlnet.decode(pipe, latents, 8, windows.Window(0, 0, 24), shot.frames).astype(np.float64)

    # Latent blending: the same windows' final latents cross-faded with the same weights, then decoded.
    # Independent noise: each window draws its own (what shot-level noise replaced), pixel cross-fade.
    latent_blend = torch.zeros_like(shared)
    independent = np.zeros_like(results["windows"])
    for window in plan:
        weight = windows.weights(window, plan)
        latents = window_latents(window, shared[:, :, window.start : window.stop])
        latent_blend[:, :, window.start : window.stop] += latents * torch.tensor(weight, dtype=latents.dtype)[None, None, :, None, None]
        own = torch.randn(latents.shape, generator=torch.Generator("cpu").manual_seed(shot.seed + 1 + window.index))
        pixels = animatediff_controlnet.decode(pipe, window_latents(window, own), 8, window,
                                               shot.frames[window.start : window.stop])
        independent[window.start : window.stop] += pixels * weight[:, None, None, None]
    results["windows, shot noise, latent blend"] = decoded(latent_blend)
    results["windows, shot noise, pixel cross-fade (shipped)"] = results.pop("windows")
    results["windows, own noise per window, pixel cross-fade"] = independent
    boundaries = long_shot.seam_boundaries(plan)
    for name, video in results.items():
        emit(what=f"seam ratio, tiny model, {name}", seam_ratio=round(long_shot.seam_ratio(video, boundaries), 3),
             boundaries=boundaries, note="1.0 = a seam steps like any other frame; >1 the seam jumps")


def sd15_shaped(directory: Path):
    """A pipeline with SD1.5's shapes (UNet + v1-5 motion modules, depth ControlNet, VAE, CLIP ViT-L text
    encoder) and random weights, plus a model directory holding only the configs our code reads."""
    import torch
    from diffusers import (AnimateDiffControlNetPipeline, AutoencoderKL, ControlNetModel, DDIMScheduler,
                           MultiControlNetModel, UNetMotionModel)
    from transformers import CLIPTextConfig, CLIPTextModel

    from inference import tiny_model

    torch.manual_seed(0)
    tokenizer = tiny_model._tokenizer()
    unet = UNetMotionModel(cross_attention_dim=768)  # diffusers' defaults are SD1.5's blocks + v1-5 motion modules
    pipe = AnimateDiffControlNetPipeline(
        vae=AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                          up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4),
        text_encoder=CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), max_position_embeddings=77,
                                                  hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                                  num_attention_heads=12)),
        tokenizer=tokenizer,
        unet=unet,
        motion_adapter=None,
        controlnet=MultiControlNetModel([ControlNetModel(cross_attention_dim=768)]),  # DEPTH_ONLY
        scheduler=DDIMScheduler(beta_schedule="linear", clip_sample=False, timestep_spacing="linspace", steps_offset=1),
    )
    pipe.set_progress_bar_config(disable=True)
    for role in (tiny_model.BASE, tiny_model.controlnet_folder("depth")):
        (directory / role).mkdir(parents=True, exist_ok=True)
    (directory / tiny_model.MOTION_ADAPTER).mkdir(parents=True, exist_ok=True)
    (directory / tiny_model.MOTION_ADAPTER / "config.json").write_text(
        json.dumps({"motion_max_seq_length": unet.config.motion_max_seq_length}))
    (directory / tiny_model.MARKER).write_text("{}")
    return pipe


def pipeline(kind: str, tmp: Path):
    """("sd15", the SD1.5-shaped random pipeline) or ("tiny", the tiny model), with the spec run() reads."""
    from inference import models
    from inference import shot as shot_module

    controls = [shot_module.Control("depth", DEPTH_ONLY[0]["model"], "main", 1.0, 0.0, 1.0)]
    if kind == "sd15":
        return sd15_shaped(tmp / "sd15"), models.tiny_spec(tmp / "sd15", controls)
    spec = models.tiny_spec(tiny(tmp), controls)
    return models.load_pipeline(spec, "cpu"), spec


def overhead(tmp: Path, kind: str, width: int, height: int, frames: int, steps: int, repeats: int = 3) -> None:
    import torch

    from inference import control, long_shot
    from inference.families import animatediff_controlnet
    from inference import shot as shot_module
    from inference.cancel import CancelFlag

    quiet_events()
    started = time.perf_counter()
    pipe, spec = pipeline(kind, tmp)
    emit(what=f"{kind} pipeline ready", seconds=round(time.perf_counter() - started, 1),
         parameters_millions=round(sum(p.numel() for m in pipe.components.values()
                                       if isinstance(m, torch.nn.Module) for p in m.parameters()) / 1e6, 1))
    shot_dir = make_shot(tmp / f"overhead-{kind}", frames=frames, size=(width, height), look={"steps": steps},
                         model={"width": width, "height": height, "window": frames, "overlap": 0},
                         long_shot={"mode": "windows"}, controls=DEPTH_ONLY)
    shot = shot_module.load(shot_dir)
    control.derive(shot, shot.frames)
    noise = long_shot.shot_noise(shot, (1, 4, frames, height // 8, width // 8))

    def bare():  # what a user of diffusers writes: control images in, frames out
        controls = animatediff_controlnet.control_arguments(shot, shot.frames)
        return pipe(prompt=shot.look.prompt, negative_prompt=shot.look.negative_prompt, num_frames=frames, width=width,
                    height=height, num_inference_steps=steps, guidance_scale=shot.look.guidance_scale, **controls,
                    latents=noise, decode_chunk_size=shot.model.decode_chunk_size, output_type="np").frames[0]

    def ours():  # plan, input hashes, noise, the call, decode checks, PNGs, the record
        shutil.rmtree(shot_dir / "windows", ignore_errors=True)
        animatediff_controlnet.run(shot, spec, "cpu", None, CancelFlag(shot_dir), pipe=pipe)

    times = {"bare": [], "ours": []}
    cpu = {"bare": [], "ours": []}  # this process's CPU seconds: less swayed than wall time by other jobs
    for _ in range(repeats):  # interleaved, so a busy neighbour on the machine slows both alike
        for name, call in (("bare", bare), ("ours", ours)):
            started, started_cpu = time.perf_counter(), time.process_time()
            call()
            times[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - started_cpu)
    best = {k: min(v) for k, v in times.items()}
    best_cpu = {k: min(v) for k, v in cpu.items()}
    emit(what=f"orchestration overhead, {kind}, {width}x{height}, {frames} frames, {steps} steps, CPU, "
              f"{torch.get_num_threads()} torch threads",
         bare_seconds=[round(t, 2) for t in times["bare"]], ours_seconds=[round(t, 2) for t in times["ours"]],
         bare_cpu_seconds=[round(t, 2) for t in cpu["bare"]], ours_cpu_seconds=[round(t, 2) for t in cpu["ours"]],
         overhead_percent=round(100 * (best["ours"] / best["bare"] - 1), 2),
         cpu_overhead_percent=round(100 * (best_cpu["ours"] / best_cpu["bare"] - 1), 2), target_percent=3)


def memory_one(tmp: Path, kind: str, width: int, height: int, frames: int, split: bool) -> None:
    """In its own process: one free_noise shot, then this process's peak RSS."""
    from inference import control
    from inference.families import animatediff_controlnet
    from inference import shot as shot_module
    from inference.cancel import CancelFlag

    quiet_events()
    pipe, spec = pipeline(kind, tmp)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    shot_dir = make_shot(tmp / f"memory{frames}{split}", frames=frames, size=(width, height), look={"steps": 1},
                         model={"width": width, "height": height, "window": 16, "overlap": 4},
                         long_shot={"mode": "free_noise", "context_length": 16, "context_stride": 4},
                         controls=DEPTH_ONLY)
    data = json.loads((shot_dir / "shot.json").read_text())
    data["preset"]["memory"] = {"split_inference": split}
    (shot_dir / "shot.json").write_text(json.dumps(data))
    shot = shot_module.load(shot_dir)
    control.derive(shot, shot.frames)
    started = time.perf_counter()
    animatediff_controlnet.run(shot, spec, "cpu", None, CancelFlag(shot_dir), pipe=pipe)
    print(json.dumps({"frames": frames, "split": split, "seconds": round(time.perf_counter() - started, 1),
                      "rss_after_load_mib": round(before / 1024),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


def memory(tmp: Path, kind: str, width: int, height: int) -> None:
    """The target's pair first (16 and 64 frames with split inference, then their ratio), then 64 frames
    without split inference for comparison."""
    peaks = {}
    for frames, split in ((16, True), (64, True), (64, False)):
        proc = subprocess.run([sys.executable, __file__, "_memory_one", str(tmp), kind, str(width), str(height),
                               str(frames), str(int(split))], cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        line = json.loads([x for x in proc.stdout.splitlines() if x.startswith('{"frames"')][-1])
        peaks[(frames, split)] = line["peak_rss_mib"]
        emit(what=f"peak RSS, {kind}, free_noise, {frames} frames, {width}x{height}, 1 step, split_inference={split}",
             **line)
        if len(peaks) == 2:
            emit(what=f"peak RSS 64 frames / 16 frames, {kind}, free_noise + split inference",
                 peak_rss_mib={"16 frames": peaks[(16, True)], "64 frames": peaks[(64, True)]},
                 ratio=round(peaks[(64, True)] / peaks[(16, True)], 3), target="<= 1.10",
                 load_average=[round(x, 1) for x in os.getloadavg()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("measurements", nargs="*", default=["modes", "seams", "overhead", "memory"])
    parser.add_argument("--model", choices=("sd15", "tiny"), default="sd15",
                        help="overhead and memory: SD1.5-shaped random weights (default) or the tiny model")
    parser.add_argument("--size", default=None, help="overhead/memory generation size WxH (default 256x160 / 128x80)")
    parser.add_argument("--frames", type=int, default=8, help="overhead: frames (default 8)")
    parser.add_argument("--steps", type=int, default=2, help="overhead: steps (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="overhead: interleaved runs of each (default 3)")
    parser.add_argument("--threads", type=int, default=None,
                        help="overhead: torch threads (1 on a shared machine: idle OpenMP threads spin and count as CPU)")
    if sys.argv[1:2] == ["_memory_one"]:
        tmp, kind, width, height, frames, split = sys.argv[2:8]
        memory_one(Path(tmp), kind, int(width), int(height), int(frames), bool(int(split)))
        return
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.measurements:
            if name == "modes":
                modes(tmp)
            elif name == "seams":
                seams(tmp)
            elif name == "overhead":
                width, height = map(int, (args.size or "256x160").split("x"))
                if args.threads:
                    import torch

                    torch.set_num_threads(args.threads)
                overhead(tmp, args.model, width, height, args.frames, args.steps, args.repeats)
            elif name == "memory":
                width, height = map(int, (args.size or "128x80").split("x"))
                memory(tmp, args.model, width, height)
            else:
                raise SystemExit(f"unknown measurement {name!r}")


if __name__ == "__main__":
    main()
