"""Seconds per frame of the passes stage (Cycles on this machine's CPU) at 512x288 for the default
preset's building (1,100 fragments), with the settings of addon/scene/passes.py and the others
measured in the same run.

    .venv-blender/bin/python bench/bench_passes.py [--size 512x288] [--frames 4]

The shot is built and baked once; each variant then renders the same frames of the collapse in
a fresh process. The first frame (scene export, BVH, kernel) is reported apart from the mean of
the others, the steady state a long shot sees; CPU s/frame (all of Cycles' threads) is the
figure to compare when other work shares the machine. Variants:
  old         the settings before: ZIP float32, every frame re-exported
  current     addon/scene/passes.py as it is
  split       current + two view layers, the data passes at 1 sample, the clay at [render] samples
  1 sample    current with [render] samples = 1: the floor, what the data passes alone cost
  denoised    1 sample, the Combined (clay) pass denoised by OpenImageDenoise (the data passes
              are never denoised): a smoother clay than 1 sample for the denoiser's cost
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIRST = 34  # the collapse: fragments are moving


def render(shot_dir: str, variant: str, size: str, frames: int) -> None:
    """In a fresh Blender process: render `frames` frames with one variant, print JSON timings."""
    import bpy

    sys.path.insert(0, str(REPO))
    from addon.core.preset import preset_from_dict
    from addon.scene import passes

    bpy.ops.wm.open_mainfile(filepath=str(Path(shot_dir) / "shot.blend"))
    manifest = json.loads((Path(shot_dir) / "shot.json").read_text())
    scene = next(s for s in bpy.data.scenes if s.camera is not None)
    preset = preset_from_dict(manifest["preset"], source="shot.json")
    passes.configure(scene, preset)
    scene.render.resolution_x, scene.render.resolution_y = map(int, size.split("x"))
    if variant == "old":
        scene.render.use_persistent_data = False
        scene.render.image_settings.exr_codec, scene.render.image_settings.color_depth = "ZIP", "32"
    elif variant == "split":
        data = scene.view_layers[0]
        clay = scene.view_layers.new("Clay")
        clay.material_override = data.material_override
        data.samples, data.use_pass_combined = 1, False
        clay.samples = preset.render.samples
    elif variant == "1 sample":
        scene.cycles.samples = 1
    elif variant == "denoised":
        scene.cycles.samples, scene.cycles.use_denoising = 1, True
    seconds, cpu = [], []
    with tempfile.TemporaryDirectory() as out:
        for frame in range(FIRST, FIRST + frames):
            start, start_cpu = time.perf_counter(), time.process_time()  # CPU: every Cycles thread
            passes.render_frame(scene, frame, Path(out) / f"{frame:04d}.exr")
            seconds.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        size_mb = (Path(out) / f"{FIRST:04d}.exr").stat().st_size / 1e6
    print("RESULT " + json.dumps({"seconds": seconds, "cpu": cpu, "mb": size_mb}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="512x288")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--variants", default="old,current,split,1 sample,denoised")
    parser.add_argument("--render", nargs=4, metavar=("SHOT", "VARIANT", "SIZE", "FRAMES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.render:
        render(*args.render[:3], int(args.render[3]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "shot"
        built = subprocess.run([sys.executable, "-m", "addon.cli", "shot", str(shot), "--stages", "build,trigger,bake"],
                               cwd=REPO, capture_output=True, text=True)
        if built.returncode:
            sys.exit(built.stderr[-3000:])
        fragments = len(json.loads((shot / "shot.json").read_text()).get("fragments", {}))
        print(f"default preset, {fragments} fragments, {args.size}, frames {FIRST}-{FIRST + args.frames - 1}")
        print(f"{'variant':<10}{'first frame s':>14}{'next frames s/frame':>21}{'CPU s/frame':>12}{'MB/frame':>10}")
        for variant in args.variants.split(","):
            run = subprocess.run([sys.executable, __file__, "--render", str(shot), variant, args.size, str(args.frames)],
                                 cwd=REPO, capture_output=True, text=True)
            line = next((l for l in run.stdout.splitlines() if l.startswith("RESULT ")), None)
            if run.returncode or line is None:
                sys.exit(run.stderr[-3000:])
            result = json.loads(line[len("RESULT "):])
            rest, rest_cpu = result["seconds"][1:] or result["seconds"], result["cpu"][1:] or result["cpu"]
            print(f"{variant:<10}{result['seconds'][0]:>14.2f}{sum(rest) / len(rest):>21.2f}"
                  f"{sum(rest_cpu) / len(rest_cpu):>12.2f}{result['mb']:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
