"""Time the backend on this machine: tiny-model build, then `generate` of 4 and 24 frames at the
preset's generation size (512x320, 20 steps, windows of 16 sharing 4).

Run: .venv-inference/bin/python bench/inference_cpu.py   (prints one JSON line per measurement)
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "inference"))
from conftest import make_shot  # noqa: E402  (the synthetic Blender-layout shot the tests use)


def timed(*args: str) -> tuple[float, dict]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "inference", *args], cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return seconds, events[-1]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tiny = Path(tmp) / "tiny"
        seconds, _ = timed("tiny-model", str(tiny))
        print(json.dumps({"what": "tiny-model build", "seconds": round(seconds, 1)}))
        for frames in (4, 24):
            shot = make_shot(
                Path(tmp) / f"shot{frames}",
                frames=frames,
                size=(320, 192),
                model={"width": 512, "height": 320, "window": 16, "overlap": 4},
                look={"steps": 20},
            )
            seconds, result = timed("generate", str(shot), "--tiny-model", str(tiny))
            print(json.dumps({"what": f"generate {frames} frames, 512x320, 20 steps, CPU", "seconds": round(seconds, 1),
                              "stages": result["timings"]}))


if __name__ == "__main__":
    main()
