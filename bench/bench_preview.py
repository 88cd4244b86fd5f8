"""Time to a still look preview (`python -m inference preview`, issue 22 item 1) with the tiny model on
this machine, and how it scales with the generation size and the shot's length. One JSON line each.

For every size and frame count: a synthetic shot (the tests' Blender-layout passes, shot size = the
generation size), then
  first     `preview --frame <middle>` in a fresh process: torch import, control maps of the whole
            shot (normalised shot-wide), model load, the denoising steps, PNG + provenance;
  denoise   of that, the pipeline call and decode alone (provenance "seconds"); load: model_load_seconds;
            maps: the rest of the preview stage (control maps, hashing the model, writing);
  other     a second frame in a fresh process (control maps already there);
  reused    the first frame again: the same look, so nothing is computed.
Per-step numbers divide `denoise` by the steps. Timings on a shared machine are inflated: compare
rows of one run with each other.

Run: .venv-inference/bin/python bench/bench_preview.py [--sizes 128x80,256x160,512x320] [--frames 16,48]
     [--steps 20]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "inference"))
from conftest import make_shot  # noqa: E402  (the synthetic Blender-layout shot the tests use)


def backend(*args: str) -> tuple[float, dict]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "inference", *args], cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return seconds, [json.loads(line) for line in proc.stdout.splitlines()][-1]


def preview(shot: Path, tiny: Path, frame: int) -> tuple[float, dict]:
    return backend("preview", str(shot), "--frame", str(frame), "--tiny-model", str(tiny))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128x80,256x160,512x320")
    parser.add_argument("--frames", default="16,48")
    parser.add_argument("--steps", type=int, default=20, help="[look] steps (the default preset's 20)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tiny = Path(tmp) / "tiny"
        backend("tiny-model", str(tiny))
        for frames in map(int, args.frames.split(",")):
            for size in args.sizes.split(","):
                width, height = map(int, size.split("x"))
                shot = make_shot(Path(tmp) / f"shot_{frames}_{size}", frames=frames, size=(width, height),
                                 model={"width": width, "height": height}, look={"steps": args.steps})
                middle = frames // 2
                first, made = preview(shot, tiny, middle)
                record = json.loads((shot / made["outputs"][1]).read_text())
                other, _ = preview(shot, tiny, middle + 1)
                reused, again = preview(shot, tiny, middle)
                assert again["reused"], again
                print(json.dumps({
                    "size": size, "frames": frames, "steps": args.steps,
                    "first_s": round(first, 2),
                    # the preview stage less load and denoise: control maps, model hashing, the writes
                    "maps_s": round(made["timings"]["preview"] - record["seconds"] - record["model_load_seconds"], 2),
                    "load_s": record["model_load_seconds"], "denoise_s": record["seconds"],
                    "per_step_s": round(record["seconds"] / args.steps, 3),
                    "other_frame_s": round(other, 2), "reused_s": round(reused, 2),
                }), flush=True)


if __name__ == "__main__":
    main()
