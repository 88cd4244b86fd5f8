"""The estimate against the measured time, and the time to a draft, with the tiny model on this CPU.
Prints one JSON line per measurement.

  estimate  a 3-window shot (windows mode, [model] window 8 / overlap 2, 20 frames) at 256x160, 20 steps:
            `estimate` (calibrating, cache in a fresh folder), then `generate`; prints the predicted
            seconds, the measured seconds of generate's "windows" stage (model load + windows, what the
            prediction covers) and their ratio (acceptance: within 30 %, 0.7 <= ratio <= 1.3)
  draft     `draft` of a 48-frame shot at the default [draft] (6 steps, scale 0.5) of a 512x320 generation,
            then how it scales: 16 / 32 / 48 frames, and scale 0.25 / 0.5 / 1.0 at 48 frames (free_noise,
            the default mode). Seconds of the draft's "windows" stage and of the whole command.

Run: .venv-inference/bin/python bench/bench_estimate.py [estimate] [draft]   (default: both)
Timings on a shared machine are inflated; the ratio of one run's two figures is what to compare.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "inference"))
from conftest import make_shot  # noqa: E402  (the synthetic Blender-layout shot the tests use)


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def backend(*args: str, env: dict | None = None) -> tuple[float, dict]:
    """Run a backend command; (wall seconds, its result event)."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "inference", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    (result,) = [e for e in map(json.loads, proc.stdout.splitlines()) if e["type"] == "result"]
    return seconds, result


def estimate(tmp: Path, tiny: Path) -> None:
    shot = make_shot(tmp / "estimate", frames=20, model={"width": 256, "height": 160, "window": 8, "overlap": 2},
                     look={"steps": 20})
    env = {"RUBBLE_ESTIMATE_CACHE": str(tmp / "estimates")}
    model = ("--tiny-model", str(tiny), "--device", "cpu")
    estimate_seconds, estimated = backend("estimate", str(shot), *model, env=env)
    _, generated = backend("generate", str(shot), *model, env=env)
    recorded = json.loads((shot / "provenance.json").read_text(encoding="utf-8"))["estimate"]
    predicted, measured = estimated["seconds"], generated["timings"]["windows"]
    emit(bench="estimate", windows=estimated["windows"], frames=20, size=[256, 160], steps=20,
         predicted_seconds=predicted, measured_seconds=measured, ratio=round(predicted / measured, 3),
         within_30_percent=0.7 <= predicted / measured <= 1.3, estimate_command_seconds=round(estimate_seconds, 2),
         recorded_in_provenance=recorded["predicted"]["seconds"] == predicted,
         predicted_peak_memory_bytes=estimated["peak_memory_bytes"],
         measured_peak_memory_bytes=recorded["measured_peak_memory_bytes"])


def draft(tmp: Path, tiny: Path) -> None:
    model = ("--tiny-model", str(tiny), "--device", "cpu")
    runs = [(48, 0.5), (16, 0.5), (32, 0.5), (48, 0.25), (48, 1.0)]
    for frames, scale in runs:
        shot = make_shot(tmp / f"draft_{frames}_{scale}", frames=frames, size=(128, 80),
                         model={"width": 512, "height": 320}, long_shot={"mode": "free_noise"})
        manifest = json.loads((shot / "shot.json").read_text(encoding="utf-8"))
        manifest["preset"]["draft"] = {"scale": scale}
        (shot / "shot.json").write_text(json.dumps(manifest), encoding="utf-8")
        backend("control", str(shot))  # the control maps are the final's too: not part of a draft's time
        seconds, result = backend("draft", str(shot), *model)
        emit(bench="draft", frames=frames, scale=scale, size=result["size"], steps=result["steps"],
             windows_seconds=result["timings"]["windows"], command_seconds=round(seconds, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", choices=("estimate", "draft"), default=["estimate", "draft"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tiny = tmp / "tiny"
        backend("tiny-model", str(tiny))
        for name in args.which or ["estimate", "draft"]:
            {"estimate": estimate, "draft": draft}[name](tmp, tiny)


if __name__ == "__main__":
    main()
