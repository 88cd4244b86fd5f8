"""Time per frame of the upscale stage (inference/upscale.py) on this machine: LANCZOS, and the x4
diffusion upscaler (tiny random weights by default) with its pipeline loaded once, as `generate` runs it.
Prints one JSON line per method.

Run: .venv-inference/bin/python bench/bench_upscale.py [--generated 128x80] [--delivered 480x288]
     [--frames 3] [--steps 4] [--device cpu] [--weights tiny|auto|pretrained]
"""

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "inference"))
from conftest import make_shot  # noqa: E402  (the synthetic Blender-layout shot the tests use)


def size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def blended_shot(root: Path, generated, delivered, frames: int, method: str, steps: int) -> Path:
    """A shot whose frames are blended already (smooth noise at the generation size), nothing delivered."""
    from inference import files

    shot = make_shot(root / method, frames=frames, size=delivered,
                     model={"width": generated[0], "height": generated[1]})
    data = json.loads((shot / "shot.json").read_text())
    data["preset"]["upscale"] = {"method": method, "steps": steps}
    (shot / "shot.json").write_text(json.dumps(data))
    rng = np.random.default_rng(0)
    for frame in range(1, frames + 1):
        coarse = rng.random((generated[1] // 8, generated[0] // 8, 3))
        image = Image.fromarray((coarse * 255).astype(np.uint8)).resize(generated, Image.Resampling.BICUBIC)
        files.write_png(shot / "blended" / f"{frame:04d}.png", image, {"Disclaimer": "AI-generated"})
    return shot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generated", type=size, default=(128, 80))
    parser.add_argument("--delivered", type=size, default=(480, 288))
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights", default="tiny", choices=("tiny", "auto", "pretrained"))
    args = parser.parse_args()

    from inference import memory, models, protocol, upscale
    from inference import shot as shot_module

    protocol._stream = io.StringIO()  # progress events would mix with the figures on stdout
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("lanczos", "diffusion"):
            shot = shot_module.load(blended_shot(Path(tmp), args.generated, args.delivered, args.frames, method,
                                                 args.steps))
            spec = upscale.resolve(shot, args.weights, models.tiny_dir(str(Path(tmp) / "tiny")))
            pipe, load_seconds = None, 0.0
            if spec is not None:
                started = time.perf_counter()
                pipe = upscale.load_pipeline(spec, args.device, memory.dtype_name(args.device, shot.memory), shot.memory)
                load_seconds = time.perf_counter() - started
            started = time.perf_counter()
            upscale.run(shot, spec, args.device, pipe=pipe)
            seconds = time.perf_counter() - started
            print(json.dumps({"method": method, "generated": list(args.generated), "delivered": list(args.delivered),
                              "frames": args.frames, "steps": args.steps if spec else None, "device": args.device,
                              "weights": None if spec is None else ("tiny" if spec.smoke_test else "pretrained"),
                              "load_s": round(load_seconds, 2), "s_per_frame": round(seconds / args.frames, 3)}),
                  flush=True)


if __name__ == "__main__":
    main()
