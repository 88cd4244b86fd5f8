"""Time to the first denoising step: a fresh `python -m inference generate` process against the warm
backend (`python -m inference serve`), tiny model, CPU. Prints one JSON line per measurement.

  cold_process   spawn -> first `generate` progress event, a new process (torch import + model load)
  server_first   request -> first step, the server's first generate (it loads the model)
  server_warm    request -> first step, a second generate with the model unchanged (another seed: a look
                 change, so the windows are redone). Target (issue 18 item 6): <= 1 s.

Run: .venv-inference/bin/python bench/bench_serve.py [--frames N] [--repeat N]
"""

import argparse
import json
import socket
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


def first_step(lines, started: float) -> float:
    """Seconds from `started` until the first `generate` step event among `lines`; drains the rest."""
    seconds = None
    for text in lines:
        event = json.loads(text)
        if seconds is None and event.get("type") == "progress" and event.get("stage") == "generate":
            seconds = time.perf_counter() - started
    if seconds is None:
        raise SystemExit("no denoising step was reported")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="warm runs to time")
    options = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    tiny = tmp / "tiny"
    subprocess.run([sys.executable, "-m", "inference", "tiny-model", str(tiny)], cwd=REPO, check=True,
                   capture_output=True)

    def argv(name: str, seed: int) -> list[str]:
        shot = make_shot(tmp / name, frames=options.frames, seed=seed)
        return ["generate", str(shot), "--tiny-model", str(tiny), "--device", "cpu"]

    command = argv("cold", 1)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "inference", *command], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    seconds = first_step(proc.stdout, started)
    proc.wait()
    emit(measure="cold_process", seconds_to_first_step=round(seconds, 3))

    state = tmp / "serve.json"
    server = subprocess.Popen([sys.executable, "-m", "inference", "serve", "--state-file", str(state)], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not state.exists():
            time.sleep(0.05)
        info = json.loads(state.read_text())

        def served(command: list[str]) -> float:
            started = time.perf_counter()
            with socket.create_connection(("127.0.0.1", info["port"])) as conn:
                conn.sendall((json.dumps({"schema": "rubble.serve/1", "token": info["token"], "command": "run",
                                          "argv": command}) + "\n").encode())
                return first_step(conn.makefile("r"), started)

        emit(measure="server_first", seconds_to_first_step=round(served(argv("first", 2)), 3))
        for run in range(options.repeat):
            emit(measure="server_warm", run=run, seconds_to_first_step=round(served(argv(f"warm{run}", 3 + run)), 3))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
