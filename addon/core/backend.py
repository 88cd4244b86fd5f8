"""Starting the inference backend and reading its event stream (docs/contract.md).

The backend runs in its own interpreter (its own virtual environment with torch), as
`python -m inference ...`. Only JSON lines on stdout come back; stderr goes to a log
file in the shot directory, so a chatty library can never block the pipe.

When a warm backend (`python -m inference serve`, docs/contract.md "Warm backend") is running
and answers with the token of its state file, the same command runs there instead, with
its models already loaded; the events, the log file and cancel are the same either way.
"""
from __future__ import annotations

import json
import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

EVENTS_SCHEMA = "rubble.events/1"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # holds inference/ and requirements/
ENV_VAR = "RUBBLE_BACKEND_PYTHON"
CANCEL_FILE = "cancel.request"
EXIT_CANCELLED = 130
# The warm backend's state file (inference/serve.py writes it, mode 0600): its port, pid and token.
SERVE_SCHEMA = "rubble.serve/1"
SERVE_FILE_ENV = "RUBBLE_SERVE_FILE"
DEFAULT_SERVE_FILE = Path.home() / ".cache" / "rubble" / "serve.json"
SERVE_HOST = "127.0.0.1"
SERVE_CONNECT_SECONDS = 2.0  # a live server on this machine answers at once; anything slower is not used


class BackendError(RuntimeError):
    """The backend failed; `hint` says what to do next."""

    def __init__(self, message: str, hint: str = "", code: str = "backend_error"):
        self.hint, self.code = hint, code
        super().__init__(f"{message}\n{hint}".strip())


class BackendNotFound(BackendError):
    pass


class BackendCancelled(BackendError):
    pass


# Where the backend environment lives when no interpreter is configured. A checkout keeps
# it in `.venv-inference` (the Makefile's path). An installed extension lives in a folder
# that reinstalling or updating replaces (and a system repository is read-only), so the
# bpy side passes its extension user folder in with `set_default_env` (ui/__init__.py).
_default_env: Path | None = None


def set_default_env(env: Path | None) -> None:
    global _default_env
    _default_env = Path(env) if env is not None else None


def default_env(root: Path = PACKAGE_ROOT) -> Path:
    return _default_env if _default_env is not None else root / ".venv-inference"


def env_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def quote(arg: str | Path) -> str:
    """One argument of a command the user pastes into a shell: macOS and Windows user
    folders often contain spaces."""
    if sys.platform == "win32":
        return subprocess.list2cmdline([str(arg)])  # cmd.exe's quoting (the MS C runtime rules)
    return shlex.quote(str(arg))


def setup_command(root: Path = PACKAGE_ROOT, env: Path | None = None) -> str:
    """The command that creates the backend environment `env`, pinned by the lock file
    (the Makefile runs the same in a checkout)."""
    env = Path(env) if env is not None else default_env(root)
    if env == root / ".venv-inference" and (root / "Makefile").exists():
        return f"make -C {quote(root)} venv-inference"
    python = "py -3.11" if sys.platform == "win32" else "python3.11"
    requirements = root / "requirements"
    return (f"{python} -m venv {quote(env)} && {quote(env_python(env))} -m pip install "
            f"-r {quote(requirements / 'inference.txt')} -c {quote(requirements / 'inference.lock.txt')}")


def find_backend_python(preference: str = "", root: Path = PACKAGE_ROOT, env: Path | None = None) -> Path:
    """The backend interpreter: add-on preference, then $RUBBLE_BACKEND_PYTHON, then the
    default environment `env` (see `default_env`). Raises BackendNotFound naming the fix."""
    env = Path(env) if env is not None else default_env(root)
    candidates = [(preference, "the add-on preference 'Backend Python'"),
                  (os.environ.get(ENV_VAR, ""), f"${ENV_VAR}"),
                  (str(env_python(env)), "the default location")]
    for value, origin in candidates:
        if not value:
            continue
        path = Path(value).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path
        if origin != "the default location":
            raise BackendNotFound(
                f"Rubble's backend Python {path} (from {origin}) does not exist or is not executable.",
                f"Fix the path, or create the backend environment with:\n  {setup_command(root, env)}",
                code="backend_not_found")
    raise BackendNotFound(
        f"Rubble's backend environment was not found (looked at {env_python(env)}).",
        f"Create it with:\n  {setup_command(root, env)}\nor point Preferences > Add-ons > Rubble > "
        f"Backend Python (or ${ENV_VAR}) at an interpreter that has requirements/inference.txt installed.",
        code="backend_not_found")


def parse_event(line: str) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        raise BackendError(f"The backend printed a line that is not an event: {line[:200]!r}",
                           "This is a backend bug: stdout must carry only JSON lines.") from None
    schema = str(event.get("schema", "<missing>"))
    if schema.partition("/")[0] != "rubble.events" or schema.rpartition("/")[2].split(".")[0] != "1":
        raise BackendError(f"The backend speaks event schema {schema!r}; this add-on reads {EVENTS_SCHEMA!r}.",
                           "Install the backend that ships with this add-on version.", code="protocol_mismatch")
    return event


def serve_file() -> Path:
    return Path(os.environ.get(SERVE_FILE_ENV) or DEFAULT_SERVE_FILE).expanduser()


def connect_server(args: list[str], log_path: Path, path: Path | None = None) -> tuple[socket.socket, dict] | None:
    """A connection to the warm backend that has accepted to run `args`, or None when none is running
    (no state file, nothing listening, or it does not take the file's token): then a subprocess runs it.
    A server that is busy with another run raises BackendError (one run at a time; no queue)."""
    path = Path(path) if path is not None else serve_file()
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        port, token = int(state["port"]), str(state["token"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        conn = socket.create_connection((SERVE_HOST, port), timeout=SERVE_CONNECT_SECONDS)
    except OSError:  # a server killed without removing its file
        return None
    try:
        request = {"schema": SERVE_SCHEMA, "token": token, "command": "run", "argv": [str(a) for a in args],
                   "cwd": str(PACKAGE_ROOT), "log": str(log_path)}
        conn.sendall((json.dumps(request) + "\n").encode("utf-8"))
        reader = conn.makefile("r", encoding="utf-8")
        answer = json.loads(reader.readline() or "null")
    except (OSError, ValueError):
        conn.close()
        return None
    if isinstance(answer, dict) and answer.get("type") == "accepted":
        conn.settimeout(None)  # a denoising step can take minutes
        return conn, {"reader": reader, "pid": answer.get("pid")}
    conn.close()
    if isinstance(answer, dict) and answer.get("code") == "busy":
        raise BackendError(answer.get("message", "The warm backend is busy."),
                           "Wait until it finishes (or cancel that run), then try again; or stop the warm "
                           f"backend to run commands side by side in their own processes ({path}).", code="busy")
    return None


def server_request(command: str, path: Path | None = None) -> dict | None:
    """Send `command` (status | stop | cancel) to the warm backend; its answer, or None when none answers."""
    path = Path(path) if path is not None else serve_file()
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        with socket.create_connection((SERVE_HOST, int(state["port"])), timeout=SERVE_CONNECT_SECONDS) as conn:
            conn.sendall((json.dumps({"schema": SERVE_SCHEMA, "token": str(state["token"]), "command": command})
                          + "\n").encode("utf-8"))
            answer = json.loads(conn.makefile("r", encoding="utf-8").readline() or "null")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return answer if isinstance(answer, dict) and answer.get("type") != "refused" else None


def start_server(python: Path, log_path: Path, path: Path | None = None) -> subprocess.Popen:
    """Start `python -m inference serve` in the background, writing the state file `path` (default:
    `serve_file()`); its output goes to `log_path`. It runs until stopped (`server_request("stop")`)."""
    path = Path(path) if path is not None else serve_file()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    with open(log_path, "a", encoding="utf-8") as log:
        return subprocess.Popen([str(python), "-m", "inference", "serve", "--state-file", str(path)],
                                stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL, env=env,
                                cwd=str(PACKAGE_ROOT), start_new_session=sys.platform != "win32")


class BackendRun:
    """One backend command. `events()` blocks (headless); `poll()` never does (modal UI).

    It runs on the warm backend when one is running (`connect_server`), else in a subprocess;
    `server=False` forces the subprocess."""

    def __init__(self, args: list[str], shot_dir: Path, python: Path, log_name: str = "backend.log",
                 server: bool = True):
        self.shot_dir = Path(shot_dir)
        (self.shot_dir / "logs").mkdir(parents=True, exist_ok=True)
        (self.shot_dir / CANCEL_FILE).unlink(missing_ok=True)
        self.log_path = self.shot_dir / "logs" / log_name
        self._queue: queue.Queue = queue.Queue()
        self.last_error: dict[str, Any] | None = None
        self.results: list[dict[str, Any]] = []
        self.warnings: list[dict[str, Any]] = []
        self.cancel_sent = False
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._exit_code: int | None = None
        connection = connect_server(args, self.log_path) if server else None
        if connection is not None:
            self._conn, info = connection
            self.server_pid = info["pid"]
            self.command = [f"<warm backend, pid {self.server_pid}>", "-m", "inference", *args]
            self._reader = threading.Thread(target=self._read_server, args=(info["reader"],), daemon=True)
        else:
            self._conn, self.server_pid = None, None
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
            env["PYTHONUNBUFFERED"] = "1"
            self._log = open(self.log_path, "a", encoding="utf-8")
            self.command = [str(python), "-m", "inference", *args]
            self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=self._log,
                                         stdin=subprocess.DEVNULL, text=True, env=env, cwd=str(PACKAGE_ROOT))
            self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def on_server(self) -> bool:
        return self._conn is not None

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.strip():
                self._queue.put(line)
        self._queue.put(None)

    def _read_server(self, reader) -> None:
        """Event lines as from a process's stdout; the server's own `exit` line carries the exit code."""
        try:
            for line in reader:
                if not line.strip():
                    continue
                try:
                    message = json.loads(line)
                except ValueError:
                    message = None  # parse_event reports it, as for a process
                if isinstance(message, dict) and message.get("schema") == SERVE_SCHEMA:
                    if message.get("type") == "exit":
                        self._exit_code = int(message.get("code", 1))
                    continue
                self._queue.put(line)
        except OSError:
            pass  # the server died: finish() says so
        self._queue.put(None)

    def _handle(self, line: str) -> dict[str, Any]:
        event = parse_event(line)
        kind = event.get("type")
        if kind == "error":
            self.last_error = event
        elif kind == "result":
            self.results.append(event)
        elif kind == "warning":
            self.warnings.append(event)
        return event

    def poll(self) -> tuple[list[dict[str, Any]], bool]:
        """Events that arrived since the last call, and whether the stream has ended."""
        events, ended = [], False
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is None:
                ended = True
                break
            events.append(self._handle(line))
        return events, ended

    def events(self) -> Iterator[dict[str, Any]]:
        while (line := self._queue.get()) is not None:
            yield self._handle(line)

    def cancel(self) -> None:
        """Cooperative: the backend stops at the next step and keeps finished windows."""
        self.cancel_sent = True
        (self.shot_dir / CANCEL_FILE).touch()
        if self._conn is not None:
            try:
                self._conn.sendall((json.dumps({"schema": SERVE_SCHEMA, "type": "cancel"}) + "\n").encode("utf-8"))
            except OSError:
                pass
        elif self.proc.poll() is None and sys.platform != "win32":
            self.proc.send_signal(signal.SIGINT)

    def running(self) -> bool:
        return self._reader.is_alive() if self._conn is not None else self.proc.poll() is None

    def stop(self) -> None:
        """Leave now (the UI gave up on the run): a subprocess is killed; the warm backend sees the
        connection close and cancels the run after its current step."""
        if self._conn is not None:
            try:
                self._conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._conn.close()
        elif self.proc.poll() is None:
            self.proc.kill()

    def finish(self) -> list[dict[str, Any]]:
        """Wait for the exit; raise a BackendError that carries the backend's own hint."""
        if self._conn is not None:
            self._reader.join()
            self._conn.close()
            code = self._exit_code
            if code is None:
                raise BackendError(
                    f"The warm backend (pid {self.server_pid}) stopped during the run.",
                    "Finished windows are kept: run it again (a subprocess runs it if the warm backend is gone). "
                    "The server's own output says why it stopped.", code="backend_crashed")
        else:
            code = self.proc.wait()
            self._reader.join()
            self._log.close()
        if code == 0:
            return self.results
        # A SIGINT that lands before the backend installs its handler (while torch imports)
        # ends it with a plain KeyboardInterrupt: still a cancel, not a crash.
        if code == EXIT_CANCELLED or (self.cancel_sent and self.last_error is None):
            raise BackendCancelled("Generation was cancelled; finished windows were kept.",
                                   "Run Generate again to resume where it stopped.", code="cancelled")
        if self.last_error:
            raise BackendError(self.last_error.get("message", "backend error"),
                               self.last_error.get("hint", ""), code=self.last_error.get("code", "backend_error"))
        raise BackendError(f"The backend exited with code {code} without an error event.",
                           f"See its log: {self.log_path}", code="backend_crashed")


def run_to_end(args: list[str], shot_dir: Path, python: Path) -> list[dict[str, Any]]:
    """A quick backend command, blocking: its `result` events, or the BackendError."""
    run = BackendRun(args, shot_dir, python)
    for _ in run.events():
        pass
    return run.finish()
