"""The warm backend (`python -m inference serve`) as a real server process, spoken to over its socket."""

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, make_shot, run_backend

SCHEMA = "rubble.serve/1"


class Server:
    """A `serve` process with its own state file; `request` sends one request and reads every line back."""

    def __init__(self, state: Path):
        self.state = state
        self.proc = subprocess.Popen([sys.executable, "-m", "inference", "serve", "--state-file", str(state)],
                                     cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not self._ready():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.proc.stderr.read()
            time.sleep(0.05)
        self.info = json.loads(state.read_text())

    def _ready(self) -> bool:
        try:
            return json.loads(self.state.read_text())["pid"] == self.proc.pid
        except (OSError, ValueError, KeyError):
            return False

    def connect(self, **request) -> tuple[socket.socket, object]:
        conn = socket.create_connection(("127.0.0.1", self.info["port"]), timeout=300)
        conn.sendall((json.dumps({"schema": SCHEMA, **request}) + "\n").encode())
        return conn, conn.makefile("r")

    def request(self, **request) -> list[dict]:
        conn, reader = self.connect(**request)
        with conn:
            return [json.loads(line) for line in reader]

    def run(self, *argv: str) -> tuple[int, list[dict]]:
        """A command as the CLI takes it: (exit code, its events)."""
        lines = self.request(token=self.info["token"], command="run", argv=list(argv))
        assert lines[0]["type"] == "accepted" and lines[-1]["type"] == "exit", lines
        assert all(e["schema"] == "rubble.events/1" for e in lines[1:-1]), lines
        return lines[-1]["code"], lines[1:-1]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    started = Server(tmp_path_factory.mktemp("serve") / "state" / "serve.json")
    yield started
    started.close()


def model_messages(events: list[dict]) -> list[str]:
    return [e["message"] for e in events if e["type"] == "progress" and e["stage"] == "model"]


def pngs(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): np.asarray(Image.open(p)).tobytes()
            for p in sorted(folder.rglob("*.png"))}


def test_state_file_is_private_and_the_server_listens_on_loopback_only(server, tmp_path):
    assert stat.S_IMODE(server.state.stat().st_mode) == 0o600, "the token must be readable by the user only"
    assert server.info["host"] == "127.0.0.1" and server.info["pid"] == server.proc.pid
    assert len(server.info["token"]) >= 32
    # The kernel's table of listening TCP sockets: the port is bound to 127.0.0.1 (0100007F), nothing else.
    table = Path("/proc/net/tcp")
    if table.exists():
        listening = [row.split()[1] for row in table.read_text().splitlines()[1:] if row.split()[3] == "0A"]
        ours = [local for local in listening if int(local.split(":")[1], 16) == server.info["port"]]
        assert ours == ["0100007F:" + f"{server.info['port']:04X}"], ours
    refused = run_backend("serve", "--host", "0.0.0.0", "--state-file", str(tmp_path / "other.json"))
    assert refused.returncode == 1 and refused.of_type("error")[0]["code"] == "bad_host"
    assert not (tmp_path / "other.json").exists()


def test_a_wrong_or_missing_token_is_refused_and_runs_nothing(server, tmp_path):
    shot = make_shot(tmp_path / "shot", frames=2)
    for token in (None, "", "x" * 43, server.info["token"][:-1]):
        request = {"command": "run", "argv": ["noise", str(shot)], **({} if token is None else {"token": token})}
        (answer,) = server.request(**request)
        assert answer["type"] == "refused" and answer["code"] == "bad_token", answer
    (answer,) = server.request(command="status")
    assert answer["code"] == "bad_token"
    assert not (shot / "noise").exists(), "a refused request ran its command"
    code, events = server.run("noise", str(shot))  # the right token: the same request runs
    assert code == 0 and events[-1]["type"] == "result" and (shot / "noise" / "latents.npy").is_file()


def test_a_second_generate_reuses_the_pipeline_and_matches_the_subprocess_bit_for_bit(server, tmp_path, tiny_model):
    first, second, alone = (make_shot(tmp_path / name, frames=3) for name in ("first", "second", "alone"))
    code, events = server.run("generate", str(first), "--tiny-model", str(tiny_model), "--device", "cpu")
    assert code == 0, events
    assert [m.startswith("loaded") for m in model_messages(events)] == [True]
    code, events = server.run("generate", str(second), "--tiny-model", str(tiny_model), "--device", "cpu")
    assert code == 0, events
    assert [m.startswith("reused") for m in model_messages(events)] == [True], "the second run loaded again"
    (status,) = server.request(token=server.info["token"], command="status")
    assert status["loads"] == 1 and status["busy"] is False
    result = next(e for e in events if e["type"] == "result")
    assert result["windows_generated"] == [0, 1] and result["blended"] is True

    subprocess_run = run_backend("generate", str(alone), "--tiny-model", str(tiny_model), "--device", "cpu")
    assert subprocess_run.returncode == 0, subprocess_run.stderr
    assert [e["type"] for e in subprocess_run.events] == [e["type"] for e in events], "not the same event stream"
    for folder in ("windows", "frames"):
        served, alone_frames = pngs(second / folder), pngs(alone / folder)
        assert served.keys() == alone_frames.keys() and served, folder
        assert served == alone_frames, f"{folder}: the warm server's frames differ from a fresh process's"
    assert "[serve]" not in (second / "logs").read_text() if (second / "logs").is_file() else True


def test_cancel_line_stops_the_run_and_the_server_keeps_serving(server, tmp_path, tiny_model):
    shot = make_shot(tmp_path / "shot", frames=3, look={"steps": 6})
    conn, reader = server.connect(token=server.info["token"], command="run",
                                  argv=["generate", str(shot), "--tiny-model", str(tiny_model), "--device", "cpu"])
    lines = []
    with conn:
        for text in reader:
            lines.append(json.loads(text))
            if lines[-1].get("stage") == "generate" and lines[-1]["done"] == 1:
                conn.sendall((json.dumps({"schema": SCHEMA, "type": "cancel"}) + "\n").encode())
    assert lines[-1] == {"schema": SCHEMA, "type": "exit", "code": 130}, lines[-3:]
    assert lines[-2]["type"] == "cancelled"
    steps = [e for e in lines if e.get("stage") == "generate"]
    assert len(steps) < 12, "the run went on after the cancel"
    (status,) = server.request(token=server.info["token"], command="status")
    assert status["busy"] is False and status["loads"] == 1, status


def test_killing_the_server_mid_run_keeps_finished_windows(tmp_path, tiny_model):
    shot = make_shot(tmp_path / "shot", frames=5, look={"steps": 8})  # 4 windows of 2 frames
    killed = Server(tmp_path / "state.json")
    try:
        conn, reader = killed.connect(token=killed.info["token"], command="run",
                                      argv=["generate", str(shot), "--tiny-model", str(tiny_model), "--device", "cpu"])
        with conn:
            for text in reader:
                event = json.loads(text)
                if event.get("stage") == "window" and event.get("message", "").startswith("window 0 done"):
                    killed.proc.send_signal(signal.SIGKILL)
                    break
            assert event["type"] != "result"
            rest = [json.loads(text) for text in reader]  # the connection ends with the process
        assert not [e for e in rest if e.get("type") in ("result", "exit")], "it finished before the kill"
    finally:
        killed.close()
    assert (shot / "windows" / "000" / "record.json").is_file()
    kept = sorted(p.parent.name for p in (shot / "windows").glob("*/record.json"))
    rerun = run_backend("generate", str(shot), "--tiny-model", str(tiny_model), "--device", "cpu")
    assert rerun.returncode == 0, rerun.stderr
    (result,) = rerun.of_type("result")
    assert result["windows_skipped"] == [int(k) for k in kept] and result["blended"] is True
    assert len(result["windows_generated"]) == 4 - len(kept)
