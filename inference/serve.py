"""`python -m inference serve`: a warm backend that keeps loaded pipelines between runs (docs/contract.md,
"Warm backend").

It listens on 127.0.0.1 only, on a port the system picks, and answers only requests that carry the random
token it wrote, with the port and its pid, to a file only the user can read (mode 0600). A request names a
command and its arguments exactly like the CLI's argv; the server runs it with the CLI's own code
(inference/__main__.py main) in its main thread and streams the same JSON-lines events back, then one
`exit` line with the exit code the process would have had. One run at a time: a request while one runs
is refused (`busy`), not queued. Cancel: a `cancel` line on the run's connection, or the client closing
it, interrupts the run as SIGINT interrupts the process (generate stops after the current step and keeps
finished windows); `<shot>/cancel.request` works as it does for a process. Window records are written as
by a process, so a killed server loses no finished window.
"""

import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from . import __version__, protocol
from .protocol import BackendError

SCHEMA = "rubble.serve/1"
HOST = "127.0.0.1"  # loopback only: the token keeps other users of this machine out, nothing keeps out a network
FILE_ENV = "RUBBLE_SERVE_FILE"
DEFAULT_FILE = Path.home() / ".cache" / "rubble" / "serve.json"  # beside the tiny model (inference/models.py)
MAX_REQUEST = 1 << 20  # bytes of one request line
HANDSHAKE_SECONDS = 10.0  # a client that connects and says nothing is dropped after this


def state_file(cli_value: Path | None = None) -> Path:
    return Path(cli_value or os.environ.get(FILE_ENV) or DEFAULT_FILE).expanduser()


def line(**fields) -> bytes:
    return (json.dumps({"schema": SCHEMA, **fields}, ensure_ascii=False) + "\n").encode("utf-8")


def write_state(path: Path, fields: dict) -> None:
    """The state file, created with mode 0600 from the start (never readable by others, even briefly),
    then renamed over any older one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(fields, out)
    os.replace(tmp, path)


class _EventSink:
    """protocol's stream during a run: event lines go to the client; a client gone cancels the run."""

    def __init__(self, conn: socket.socket, on_gone):
        self.conn, self.on_gone, self.gone = conn, on_gone, False
        self._lock = threading.Lock()
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        return len(text)

    def flush(self) -> None:
        data, self._pending = self._pending, ""
        if data:
            self.send(data.encode("utf-8"))

    def send(self, data: bytes) -> None:
        with self._lock:
            if self.gone:
                return
            try:
                self.conn.sendall(data)
            except OSError:
                self.gone = True
        if self.gone:
            self.on_gone()


class _Tee:
    """stderr during a run: the server's own log and the shot's log file (as a process's stderr is)."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            try:
                stream.write(text)
                stream.flush()
            except (OSError, ValueError):
                pass
        return len(text)

    def flush(self) -> None:
        pass


class Server:
    def __init__(self, path: Path, port: int = 0):
        self.path = path
        self.token = secrets.token_urlsafe(32)
        self.listener = socket.create_server((HOST, port))
        self.port = self.listener.getsockname()[1]
        self.busy = threading.Lock()
        self.requests: list = []  # (conn, its reader, request) handed to the main thread; guarded by `ready`
        self.ready = threading.Condition()
        self.stopping = False
        self.runs = 0
        self.current: dict | None = None  # the run in progress: argv, started
        self._interruptible = False  # SIGINT/SIGTERM may interrupt the command now (only while it runs)

    # --- accepting (one thread per connection; runs happen in the main thread) -----------------------

    def accept_forever(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # the listener was closed: stopping
            threading.Thread(target=self.handshake, args=(conn,), daemon=True).start()

    def handshake(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(HANDSHAKE_SECONDS)
            reader = conn.makefile("rb")
            request = json.loads(reader.readline(MAX_REQUEST) or b"null")
            if not isinstance(request, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError):
            self.refuse(conn, "bad_request", f"Send one JSON line: {{\"schema\": \"{SCHEMA}\", \"token\": …, "
                                             "\"command\": \"run\", \"argv\": [...]}.")
            return
        token = request.get("token")
        if not isinstance(token, str) or not secrets.compare_digest(token.encode(), self.token.encode()):
            what = "no token" if token is None else "a wrong token"
            self.refuse(conn, "bad_token", f"The request carried {what}; read the token from {self.path}.")
            return
        command = request.get("command")
        if command == "status":
            self.reply(conn, type="status", **self.status())
        elif command == "stop":
            self.reply(conn, type="stopping", pid=os.getpid())
            self.stop()
        elif command == "cancel":
            self.interrupt()
            self.reply(conn, type="cancelling", running=self.current is not None)
        elif command == "run":
            argv = request.get("argv")
            if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
                self.refuse(conn, "bad_request",
                            "\"argv\" must be a non-empty list of strings, as on the command line.")
            elif argv[0] == "serve":
                self.refuse(conn, "bad_request", "A server does not start another server; run `serve` from a shell.")
            elif not self.busy.acquire(blocking=False):
                running = self.current or {"argv": ["another", "command"], "started": time.time()}
                since = time.strftime("%H:%M:%S", time.localtime(running["started"]))
                self.refuse(conn, "busy", f"The warm backend (pid {os.getpid()}) is running "
                                          f"`{' '.join(running['argv'])}` since {since}; one run at a time. "
                                          "Wait for it, or cancel it.")
            else:
                conn.settimeout(None)
                with self.ready:
                    self.requests.append((conn, reader, request))
                    self.ready.notify()
        else:
            self.refuse(conn, "bad_request", f"Unknown command {command!r}; commands: run, status, cancel, stop.")

    def reply(self, conn: socket.socket, **fields) -> None:
        try:
            conn.sendall(line(**fields))
        except OSError:
            pass
        conn.close()

    def refuse(self, conn: socket.socket, code: str, message: str) -> None:
        print(f"[serve] refused a request: {code}: {message}", file=sys.stderr)
        self.reply(conn, type="refused", code=code, message=message)

    def status(self) -> dict:
        from . import pipeline_cache

        return {"pid": os.getpid(), "rubble": __version__, "busy": self.current is not None,
                "running": (self.current or {}).get("argv"), "runs": self.runs, "loads": pipeline_cache.loads}

    def stop(self) -> None:
        self.stopping = True
        with self.ready:
            self.ready.notify()

    def interrupt(self, run_id: int | None = None) -> None:
        """Cancel the run in progress as SIGINT cancels a process: generate's CancelFlag stops after the
        current step (finished windows kept); other commands stop where they are (their files are
        written atomically)."""
        current = self.current
        if current is not None and self._interruptible and run_id in (None, current["id"]):
            signal.raise_signal(signal.SIGINT)  # Python runs the handler in the main thread, which runs the command

    # --- running (main thread: signal handlers, and the CLI's CancelFlag, only work there) ---------------

    def serve_forever(self) -> None:
        from . import pipeline_cache

        pipeline_cache.enable()
        write_state(self.path, {"schema": SCHEMA, "host": HOST, "port": self.port, "token": self.token,
                                "pid": os.getpid(), "rubble": __version__, "python": sys.executable})
        threading.Thread(target=self.accept_forever, daemon=True).start()
        print(f"[serve] listening on {HOST}:{self.port} (pid {os.getpid()}); token in {self.path}", file=sys.stderr)
        protocol.progress("serve", 0, 0, f"listening on {HOST}:{self.port}, token in {self.path}")
        try:
            while True:
                with self.ready:
                    while not self.requests and not self.stopping:
                        self.ready.wait(0.5)  # a timeout keeps Ctrl-C/SIGTERM prompt while idle
                    if self.stopping:
                        break
                    conn, reader, request = self.requests.pop(0)
                self.run(conn, reader, request)  # releases `busy` before it says `exit`
        finally:
            self.listener.close()
            self._remove_state()
            print("[serve] stopped", file=sys.stderr)

    def run(self, conn: socket.socket, reader, request: dict) -> None:
        from . import __main__ as cli

        argv = request["argv"]
        self.runs += 1
        run_id = self.runs
        sink = _EventSink(conn, on_gone=lambda: self.interrupt(run_id))
        watcher = threading.Thread(target=self._watch, args=(reader, run_id), daemon=True)
        log = self._open_log(request.get("log"))
        saved = (protocol._stream, sys.stdout, sys.stderr, os.getcwd(),
                 {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)})
        code = protocol.EXIT_ERROR
        self.current = {"argv": argv, "started": time.time(), "id": run_id}
        print(f"[serve] run {argv}", file=sys.stderr)
        try:
            sink.send(line(type="accepted", pid=os.getpid()))
            protocol._stream = sink
            sys.stderr = _Tee(saved[2], *([log] if log else []))
            if request.get("cwd") and Path(request["cwd"]).is_dir():
                os.chdir(request["cwd"])  # relative paths in argv mean what they mean to the client
            for signum in (signal.SIGINT, signal.SIGTERM):  # during a run: cancel it (idle: stop, see serve())
                signal.signal(signum, self._on_interrupt)
            watcher.start()
            self._interruptible = True
            try:
                code = cli.main(argv)
            except SystemExit as exc:  # argparse: a bad command line (its message is in the log)
                code = exc.code if isinstance(exc.code, int) else protocol.EXIT_USAGE
            except KeyboardInterrupt:
                protocol.cancelled("Cancelled before the command could stop at a step; finished work is kept "
                                   "and a rerun resumes.", [])
                code = protocol.EXIT_CANCELLED
            finally:
                self._interruptible = False
        finally:
            for signum, handler in saved[4].items():  # the CLI's CancelFlag installs its own and keeps them
                signal.signal(signum, handler)
            protocol._stream, sys.stdout, sys.stderr = saved[:3]
            os.chdir(saved[3])
            if log:
                log.close()
            self.current = None
            self.busy.release()  # before `exit`: a client that sends its next request at once finds us free
            sink.send(line(type="exit", code=code))
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
            print(f"[serve] exit {code}", file=sys.stderr)

    def _on_interrupt(self, signum, frame) -> None:
        if self._interruptible:
            self._interruptible = False  # one interrupt per run, never outside the command
            raise KeyboardInterrupt

    def _watch(self, reader, run_id: int) -> None:
        """While a run streams: a `cancel` line or the client closing its end cancels the run."""
        try:
            for raw in reader:
                try:
                    if json.loads(raw).get("type") == "cancel":
                        break
                except (ValueError, AttributeError):
                    continue
        except OSError:
            pass
        self.interrupt(run_id)

    @staticmethod
    def _open_log(path):
        if not path:
            return None
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            return open(path, "a", encoding="utf-8")
        except OSError:
            return None

    def _remove_state(self) -> None:
        """Remove the state file if it is still ours (a newer server may have replaced it)."""
        try:
            if json.loads(self.path.read_text(encoding="utf-8")).get("token") == self.token:
                self.path.unlink()
        except (OSError, ValueError):
            pass


def serve(path: Path, host: str, port: int) -> int:
    if host != HOST:
        raise BackendError(
            "bad_host",
            f"The warm backend listens on {HOST} only, not {host!r}: anything else would offer the GPU, the "
            "shot files and a way to run backend commands to the network.",
            f"Leave --host out (or give {HOST}); to generate on another machine, run the backend there.",
        )
    server = Server(path, port)
    stop = lambda signum, frame: server.stop()  # noqa: E731  idle: stop; during a run the command's handlers rule
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    server.serve_forever()
    return protocol.EXIT_OK
