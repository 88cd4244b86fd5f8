"""Wall time of each pipeline stage, cold (empty shot directory) and warm (second run).

    .venv-blender/bin/python bench/bench_stages.py [--preset presets/default.toml]

The warm run is the baseline's counterpart measured in the same process: the ratio
warm/cold says how much a no-change rerun costs (the goal is that it costs nothing
but start-up). Prints one table; writes nothing outside a temporary directory.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(shot: Path, preset: Path, tiny: Path, backend: str) -> tuple[float, dict[str, float]]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "addon.cli", "shot", str(shot), "--preset", str(preset),
                             "--backend-python", backend, "--tiny-model", str(tiny)],
                            cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode:
        sys.exit(result.stderr[-3000:])
    summary = re.search(r"done in [\d.]+s \((.*)\)", result.stderr).group(1)
    return wall, {name: float(sec) for name, sec in re.findall(r"(\w+) ([\d.]+)s", summary)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", type=Path, default=REPO / "presets" / "default.toml")
    parser.add_argument("--backend-python", default=os.environ.get("RUBBLE_BACKEND_PYTHON",
                                                                    str(REPO / ".venv-inference" / "bin" / "python")))
    parser.add_argument("--tiny-model", type=Path, default=REPO / "build" / "tiny-model")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "shot"
        cold_wall, cold = run(shot, args.preset, args.tiny_model, args.backend_python)
        warm_wall, warm = run(shot, args.preset, args.tiny_model, args.backend_python)
    print(f"{'stage':<12}{'cold s':>10}{'warm s':>10}{'warm/cold':>11}")
    for name in cold:
        print(f"{name:<12}{cold[name]:>10.2f}{warm.get(name, 0):>10.2f}{warm.get(name, 0) / max(cold[name], 1e-9):>11.3f}")
    print(f"{'wall':<12}{cold_wall:>10.2f}{warm_wall:>10.2f}{warm_wall / cold_wall:>11.3f}")


if __name__ == "__main__":
    main()
