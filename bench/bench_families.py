"""Time per frame and the seam metric of each model family with its tiny random-weight model, on
this machine's CPU. Prints one JSON line per family.

Both families run the same synthetic shot (tests/inference/conftest.py make_shot: 25 frames,
128x80 generation, 6 steps, one depth control) in windows mode, the only long-shot mode Wan has:
AnimateDiff in windows of 16 sharing 4, Wan2.1-VACE in windows of 17 (4k+1) sharing 5 (its stride
12 keeps windows on latent frames). The seam is inference/long_shot.py seam_ratio on the windows'
overlap ends, as bench/inference_cpu.py measures it (1.0: a seam steps like any other frame).
The tiny models' figures prove the plumbing and compare overheads; they say nothing about the real
models' speed (README, "Model presets", has the published figures for those).

Run: .venv-inference/bin/python bench/bench_families.py [--frames N] [--steps N]
"""

import argparse
import json
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

FAMILIES = {
    "animatediff-controlnet": ({"window": 16, "overlap": 4},
                               [{"kind": "depth", "model": "lllyasviel/control_v11f1p_sd15_depth", "revision": "main"}]),
    "wan-vace": ({"window": 17, "overlap": 5},
                 [{"kind": "depth", "model": "Wan-AI/Wan2.1-VACE-1.3B-diffusers", "revision": "main"}]),
}


def backend(*args: str) -> tuple[float, dict]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "inference", *args], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return time.perf_counter() - started, [json.loads(line) for line in proc.stdout.splitlines()][-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    from PIL import Image

    from inference import long_shot
    from inference import shot as shot_module

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for family, (windowing, controls) in FAMILIES.items():
            shot_dir = make_shot(tmp / family, frames=args.frames, size=(128, 80), look={"steps": args.steps},
                                 model={"family": family, "width": 128, "height": 80, **windowing}, controls=controls)
            backend("generate", str(shot_dir), "--tiny-model", str(tmp / "tiny"), "--device", "cpu")  # builds, warms
            for path in (shot_dir / "windows").glob("*/record.json"):
                path.unlink()  # timed run: every window again, the model already built
            seconds, result = backend("generate", str(shot_dir), "--tiny-model", str(tmp / "tiny"), "--device", "cpu")
            video = np.stack([np.asarray(Image.open(p), dtype=np.float64)
                              for p in sorted((shot_dir / "frames").glob("*.png"))])
            plan = long_shot.plan(shot_module.load(shot_dir))
            boundaries = long_shot.seam_boundaries(plan)
            print(json.dumps({
                "family": family, "model": "tiny random weights", "device": "cpu", "frames": args.frames,
                "size": [128, 80], "steps": args.steps, "windows": [[w.start, w.stop] for w in plan],
                "seconds_per_frame": round(result["timings"]["windows"] / args.frames, 3),
                "model_load_seconds": result["timings"]["model"], "total_seconds": round(seconds, 1),
                "seam_ratio": round(long_shot.seam_ratio(video, boundaries), 3), "boundaries": boundaries,
            }), flush=True)


if __name__ == "__main__":
    main()
