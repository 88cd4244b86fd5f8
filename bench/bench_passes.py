"""Seconds per frame of the passes stage (Cycles on this machine's CPU) at 512x288 for the default
preset's building (1,104 fragments), with the settings of addon/scene/passes.py and the others
measured in the same run, and what each costs in quality.

    .venv-blender/bin/python bench/bench_passes.py [--size 512x288] [--frames 6]

The shot is built and baked once; each variant then renders the same frames of the collapse in
a fresh process. The first frame (scene export, BVH, kernel) is reported apart from the mean of
the others, the steady state a long shot sees. CPU s/frame (all of Cycles' threads: the process's
user + system time) is the figure to compare when other work shares the machine; wall s/frame is
the issue's figure on an idle machine. "sync s" is Cycles' own synchronisation time (scene export),
read from the EXR header; the rest of a frame is path tracing, denoising and Blender's own work.
Quality, against the reference (64 samples, not denoised, the old light settings):
  clay dB     PSNR of the clay as the control stage sees it (sRGB, clipped), over all frames;
  data        Depth and Object Index: pixels different from `before`; Normal and Vector: pixels
              off by more than 0.01 (normal) or 0.1 px (vector) from `before` (their edge pixels
              are averages of the samples, one sample hits one surface).
Variants:
  before      the settings before issue 16: 8 samples, no denoising, written with write_still (RLE)
  now         addon/scene/passes.py with the default preset: 1 sample, the clay denoised
              (OpenImageDenoise, quality FAST, colour only), written uncompressed
  now rle     the same written RLE ([render] pass_codec = "rle"): what the codec costs here
  raw 1       1 sample, no denoising: the floor, and the noise the denoiser removes
  dn 2        2 samples, denoised: the next step up if an artist wants a cleaner clay
  split       two view layers, the data passes at 1 sample and the clay at 8 (issue 16's idea):
              slower, each layer exports the scene and traces its own camera rays
  reference   64 samples, not denoised: the clay every variant is compared with
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIRST = 34  # the collapse: fragments are moving
VARIANTS = ("before", "now", "now rle", "raw 1", "dn 2", "split", "reference")


def render(shot_dir: str, variant: str, size: str, frames: int, out: str) -> None:
    """In a fresh Blender process: render `frames` frames with one variant into `out`, print JSON timings."""
    import dataclasses

    import bpy

    sys.path.insert(0, str(REPO))
    from addon.core.preset import preset_from_dict
    from addon.scene import passes

    bpy.ops.wm.open_mainfile(filepath=str(Path(shot_dir) / "shot.blend"))
    manifest = json.loads((Path(shot_dir) / "shot.json").read_text())
    scene = next(s for s in bpy.data.scenes if s.camera is not None)
    preset = preset_from_dict(manifest["preset"], source="shot.json")
    render_settings = {"before": dict(samples=8, denoise=False, pass_codec="rle"), "now rle": dict(pass_codec="rle"),
                       "raw 1": dict(samples=1, denoise=False),
                       "dn 2": dict(samples=2, denoise=True), "split": dict(samples=8, denoise=False),
                       "reference": dict(samples=64, denoise=False)}.get(variant, {})
    preset = dataclasses.replace(preset, render=dataclasses.replace(preset.render, **render_settings))
    passes.configure(scene, preset)
    scene.render.resolution_x, scene.render.resolution_y = map(int, size.split("x"))
    render_frame = passes.render_frame
    if variant == "before":
        render_frame = _render_frame_before
    elif variant == "split":
        data = scene.view_layers[0]
        clay = scene.view_layers.new("Clay")
        clay.material_override = data.material_override
        data.samples, data.use_pass_combined = 1, False
        clay.samples = preset.render.samples
    seconds, cpu = [], []
    for frame in range(FIRST, FIRST + frames):
        start, start_cpu = time.perf_counter(), time.process_time()  # CPU: every Cycles thread
        render_frame(scene, frame, Path(out) / f"{frame:04d}.exr")
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    print("RESULT " + json.dumps({"seconds": seconds, "cpu": cpu}))


def _render_frame_before(scene, frame: int, path: Path) -> None:
    """addon/scene/passes.py's render_frame before issue 16: the output path set every frame, write_still."""
    import bpy

    tmp = path.with_name(f".{path.stem}.tmp.exr")
    scene.frame_set(frame)
    scene.render.filepath = str(tmp)
    scene.render.use_file_extension = False
    with bpy.context.temp_override(scene=scene):
        bpy.ops.render.render(write_still=True)
    os.replace(tmp, path)


def read_exr(path: Path) -> tuple[dict[str, np.ndarray], float]:
    """{pass.component: pixels} of a pass file (Blender 4.2 and 5.0 names alike) and Cycles' sync seconds."""
    import OpenEXR

    channels, sync = {}, 0.0
    for part in OpenEXR.File(str(path)).parts:
        for name, data in part.channels.items():
            channels[name.split(".", 1)[1].replace("IndexOB", "Object Index")] = data.pixels
        stamp = part.header.get("cycles.ViewLayer.synchronization_time")
        if stamp:  # "MM:SS.ss", one per view layer
            minutes, seconds = stamp.split(":")
            sync += 60 * int(minutes) + float(seconds)
    return channels, sync


def clay_srgb(channels: dict[str, np.ndarray]) -> np.ndarray:
    """The clay as inference/control.py's clay_image sees it: linear RGB -> sRGB (IEC 61966-2-1), clipped."""
    linear = np.clip(channels["Combined"][..., :3].astype(np.float64), 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1.0 / 2.4) - 0.055)


def quality(out: Path, reference: Path, before: Path, frames: list[int]) -> dict:
    squared, changed, pixels = [], {}, 0
    for frame in frames:
        name = f"{frame:04d}.exr"
        mine, ref, old = read_exr(out / name)[0], read_exr(reference / name)[0], read_exr(before / name)[0]
        squared.append(np.mean((clay_srgb(mine) - clay_srgb(ref)) ** 2))
        pixels += mine["Depth.Z"].size
        for kind, tolerance in (("Depth", 0.0), ("Object Index", 0.0), ("Normal", 0.01), ("Vector", 0.1)):
            parts = [k for k in old if k.startswith(kind + ".")]
            off = np.zeros(mine["Depth.Z"].shape, dtype=bool)
            for key in parts:
                off |= np.abs(mine[key].astype(np.float64) - old[key]) > tolerance
            changed[kind] = changed.get(kind, 0) + int(off.sum())
    mse = float(np.mean(squared))
    return {"psnr": 10 * np.log10(1.0 / mse) if mse > 0 else float("inf"),
            "data": {kind: 100.0 * count / pixels for kind, count in changed.items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="512x288")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated; 'before' and 'reference' are always run (the baselines)")
    parser.add_argument("--render", nargs=5, metavar=("SHOT", "VARIANT", "SIZE", "FRAMES", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.render:
        shot, variant, size, frames, out = args.render
        render(shot, variant, size, int(frames), out)
        return
    variants = [v for v in VARIANTS if v in args.variants.split(",") or v in ("before", "reference")]
    frames = list(range(FIRST, FIRST + args.frames))
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "shot"
        built = subprocess.run([sys.executable, "-m", "addon.cli", "shot", str(shot), "--stages", "build,trigger,bake"],
                               cwd=REPO, capture_output=True, text=True)
        if built.returncode:
            sys.exit(built.stderr[-3000:])
        fragments = len(json.loads((shot / "shot.json").read_text()).get("fragments", {}))
        print(f"default preset, {fragments} fragments, {args.size}, frames {frames[0]}-{frames[-1]}, "
              f"{os.cpu_count()} CPUs, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        results = {}
        for variant in variants:
            out = Path(tmp) / variant.replace(" ", "_")
            out.mkdir()
            run = subprocess.run([sys.executable, __file__, "--render", str(shot), variant, args.size, str(args.frames),
                                  str(out)], cwd=REPO, capture_output=True, text=True)
            line = next((l for l in run.stdout.splitlines() if l.startswith("RESULT ")), None)
            if run.returncode or line is None:
                sys.exit(run.stderr[-3000:])
            results[variant] = json.loads(line[len("RESULT "):])
            results[variant]["sync"] = np.mean([read_exr(out / f"{f:04d}.exr")[1] for f in frames[1:] or frames])
            results[variant]["mb"] = np.mean([(out / f"{f:04d}.exr").stat().st_size for f in frames]) / 1e6
        print(f"{'variant':<10}{'first s':>8}{'s/frame':>9}{'CPU s/frame':>12}{'sync s':>8}{'MB/frame':>9}"
              f"{'clay dB':>8}  data passes: % pixels off from 'before' (Depth, Object Index, Normal, Vector)")
        for variant, result in results.items():
            out = Path(tmp) / variant.replace(" ", "_")
            q = quality(out, Path(tmp) / "reference", Path(tmp) / "before", frames)
            rest, rest_cpu = result["seconds"][1:] or result["seconds"], result["cpu"][1:] or result["cpu"]
            result.update(wall=sum(rest) / len(rest), cpu_mean=sum(rest_cpu) / len(rest_cpu))
            print(f"{variant:<10}{result['seconds'][0]:>8.2f}{result['wall']:>9.2f}{result['cpu_mean']:>12.2f}"
                  f"{result['sync']:>8.2f}{result['mb']:>9.2f}{q['psnr']:>8.1f}  "
                  + ", ".join(f"{q['data'][k]:.2f}" for k in ("Depth", "Object Index", "Normal", "Vector")), flush=True)
        now, before = results.get("now"), results["before"]
        print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        if now:
            print(f"passes stage, default preset ({fragments} fragments, {args.size}): {now['wall']:.2f} s/frame wall, "
                  f"{now['cpu_mean']:.2f} CPU-s/frame (before: {before['wall']:.2f} s, {before['cpu_mean']:.2f} CPU-s; "
                  f"CPU ratio {now['cpu_mean'] / before['cpu_mean']:.2f}); issue 16's goal: <= 0.3 s/frame on an idle 2-core machine")


if __name__ == "__main__":
    main()
