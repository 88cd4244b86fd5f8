"""Backend setup without a terminal: create the backend's own virtual environment and install
the pinned requirements the extension ships (requirements/inference.txt, constrained by
inference.lock.txt), with a live log and Cancel; check an interpreter with the Doctor.

No Blender here: ui/preferences.py drives these from the Preferences with a modal timer
(and `wait()` runs them to the end headless). Nothing touches the network unless the
user asks for an install from the package index; the caller refuses that when Blender's
online access is off (`network_refusal`).

An install builds the environment beside its final place (`<env>.partial`) and swaps it
in only when every command succeeded, so Cancel or a failure never breaks a working
backend. A venv moved this way keeps working when started as `<env>/bin/python`
(Python finds its prefix from pyvenv.cfg next to the interpreter, PEP 405); its
console scripts would not, which is why every command here is `python -m ...`.
"""
from __future__ import annotations

import json
import os
import platform
import queue
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .backend import PACKAGE_ROOT, env_python

REQUIREMENTS = PACKAGE_ROOT / "requirements"
# The torch build per accelerator. The lock pins the CUDA 13.0 runtime (nvidia-*-cu13,
# nvidia-cuda-runtime==13.0.96), whose wheels PyTorch publishes under whl/cu130
# (pytorch.org, "Start Locally"). macOS wheels on PyPI include MPS.
TORCH_INDEX = {"cuda": "https://download.pytorch.org/whl/cu130",
               "cpu": "https://download.pytorch.org/whl/cpu",
               "mps": None}
RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"


def detect_accelerator() -> tuple[str, str]:
    """("cuda" | "mps" | "cpu", what was seen). CUDA when the NVIDIA driver answers; no torch
    is needed (there is none yet: this picks which torch to install)."""
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return "mps", "Apple Silicon (Metal)"
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            out = None
        if out is not None and out.returncode == 0 and "GPU" in out.stdout:
            return "cuda", out.stdout.strip().splitlines()[0]
    return "cpu", "no NVIDIA driver or Apple Silicon found"


def network_refusal(online_access: bool, needs_network: bool) -> str | None:
    """Why an install may not start, or None: Blender's own switch decides (manual,
    "Extensions > Online Access")."""
    if needs_network and not online_access:
        return ("Blender's online access is off, and installing the backend downloads its packages (torch, "
                "diffusers; several GB) from PyPI and download.pytorch.org. Turn on Preferences > System > "
                "Network > Allow Online Access (Blender started with --offline-mode keeps it off), then click "
                "Install Backend again; or use an existing Python.")
    return None


@dataclass(frozen=True)
class InstallPlan:
    env: Path                       # where the backend environment ends up
    staging: Path                   # where it is built
    commands: tuple[tuple[str, ...], ...]
    needs_network: bool


def plan_install(env: Path, accelerator: str, base_python: str = sys.executable,
                 requirements: Path = REQUIREMENTS / "inference.txt",
                 constraints: Path = REQUIREMENTS / "inference.lock.txt",
                 find_links: Path | None = None) -> InstallPlan:
    """The commands that build the environment. `find_links`: install only from that folder
    of wheels, never from an index (offline installs, studios' mirrors, the tests)."""
    env = Path(env)
    staging = env.with_name(env.name + ".partial")
    python = str(env_python(staging))
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
           "-r", str(requirements), "-c", str(constraints)]
    if find_links is not None:
        pip += ["--no-index", "--find-links", str(find_links)]
    elif TORCH_INDEX[accelerator]:
        pip += ["--extra-index-url", TORCH_INDEX[accelerator]]
    commands = ((str(base_python), "-m", "venv", str(staging)), tuple(pip))
    return InstallPlan(env, staging, commands, needs_network=find_links is None)


class CommandsRun:
    """Commands run one after another in the background, their output streamed line by line
    into `lines` and a log file. `poll()` never blocks (a modal timer calls it); `cancel()`
    kills the running command at once."""

    def __init__(self, commands, log_path: Path, env: dict | None = None):
        self.commands = [list(c) for c in commands]
        self.lines: list[str] = []
        self.state = RUNNING
        self.returncode: int | None = None
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w", encoding="utf-8")
        self._env = env
        self._queue: queue.Queue = queue.Queue()
        self._proc: subprocess.Popen | None = None
        self._next()

    def _say(self, line: str) -> None:
        self.lines.append(line)
        self._log.write(line + "\n")
        self._log.flush()

    def _next(self) -> None:
        command = self.commands.pop(0)
        self._say("$ " + " ".join(command))
        try:
            self._proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, text=True, errors="replace", env=self._env)
        except OSError as exc:
            self._say(f"could not start {command[0]}: {exc}")
            self._finish(FAILED)
            return
        threading.Thread(target=self._read, args=(self._proc,), daemon=True).start()

    def _read(self, proc) -> None:
        for line in proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _drain(self) -> bool:
        """Move the output that arrived into `lines`; True when the current command's output ended."""
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return False
            if line is None:
                return True
            self._say(line)

    def on_success(self) -> None:
        """What to do after the last command succeeded (subclasses)."""

    def on_stop(self) -> None:
        """What to clean up after a failure or Cancel (subclasses)."""

    def _finish(self, state: str) -> None:
        self.state = state
        if state == DONE:
            self.on_success()
        else:
            self.on_stop()
        self._say({DONE: "Done.", FAILED: "Failed.", CANCELLED: "Cancelled."}[state])
        self._log.close()

    def poll(self) -> str:
        if self.state != RUNNING:
            return self.state
        if not self._drain():
            return self.state
        self.returncode = self._proc.wait()
        if self.returncode != 0:
            self._say(f"exit code {self.returncode}")
            self._finish(FAILED)
        elif self.commands:
            self._next()
        else:
            self._finish(DONE)
        return self.state

    def cancel(self) -> None:
        if self.state != RUNNING:
            return
        self._proc.kill()
        self._proc.wait()
        self._finish(CANCELLED)

    def wait(self, timeout: float = 3600) -> str:
        deadline = time.monotonic() + timeout
        while self.poll() == RUNNING:
            if time.monotonic() > deadline:
                self.cancel()
                break
            time.sleep(0.05)
        return self.state


class Install(CommandsRun):
    """An install plan, run: the new environment replaces `plan.env` only when it is complete."""

    def __init__(self, plan: InstallPlan, log_path: Path):
        self.plan = plan
        shutil.rmtree(plan.staging, ignore_errors=True)  # a crashed earlier attempt
        super().__init__(plan.commands, log_path)

    def on_success(self) -> None:
        old = self.plan.env.with_name(self.plan.env.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if self.plan.env.exists():
            os.replace(self.plan.env, old)
        os.replace(self.plan.staging, self.plan.env)
        shutil.rmtree(old, ignore_errors=True)
        self._say(f"Backend environment ready: {env_python(self.plan.env)}")

    def on_stop(self) -> None:
        shutil.rmtree(self.plan.staging, ignore_errors=True)


def doctor_command(python: Path) -> list[str]:
    return [str(python), "-m", "inference", "doctor"]


def backend_env_vars() -> dict:
    """The backend's source comes from the extension (as in core/backend.py)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Doctor(CommandsRun):
    """`python -m inference doctor` for one interpreter. The report is its human-readable text
    (stderr) plus the error's message and hint, if any: what "Copy Report" copies."""

    def __init__(self, python: Path, log_path: Path):
        self.python = Path(python)
        super().__init__([doctor_command(self.python)], log_path, env=backend_env_vars())

    def events(self) -> list[dict]:
        events = []
        for line in self.lines:
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return events

    @property
    def ok(self) -> bool:
        return self.state == DONE and any(e.get("type") == "result" for e in self.events())

    def report(self) -> str:
        # The doctor's own words (stderr, errors with their hint included); the events are for programs.
        text = [line for line in self.lines[1:] if not line.startswith("{") and line not in ("Done.", "Failed.")]
        if self.state == FAILED and not self.events():
            text.append(f"{self.python} could not run the Rubble backend's doctor (see above): is it a Python "
                        "3.11 interpreter of an environment with requirements/inference.txt installed?")
        return "\n".join(text)
