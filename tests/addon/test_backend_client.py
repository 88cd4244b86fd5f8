"""The add-on's side of the boundary: finding the backend, and reading its events."""
import json
import os
import subprocess
import sys

import pytest

from addon.core import backend
from conftest import REPO


def test_missing_backend_names_the_command_that_fixes_it(tmp_path, monkeypatch):
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    with pytest.raises(backend.BackendNotFound) as err:
        backend.find_backend_python("", root=tmp_path)
    message = str(err.value)
    assert f"-m venv {tmp_path / '.venv-inference'}" in message
    assert (f"-r {tmp_path / 'requirements' / 'inference.txt'} "
            f"-c {tmp_path / 'requirements' / 'inference.lock.txt'}") in message, "install without the lock file"
    (tmp_path / "Makefile").write_text("")
    with pytest.raises(backend.BackendNotFound, match=f"make -C {tmp_path} venv-inference"):
        backend.find_backend_python("", root=tmp_path)


def test_paths_with_spaces_are_quoted_in_the_printed_command(tmp_path, monkeypatch):
    """macOS ("Application Support") and Windows user folders have spaces: the printed
    command must survive a paste into a shell. Run it through the shell to be sure."""
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    root, env = tmp_path / "Rubble Extension", tmp_path / "Application Support" / "backend"
    with pytest.raises(backend.BackendNotFound) as err:
        backend.find_backend_python("", root=root, env=env)
    message = str(err.value)
    assert f"looked at {env / 'bin' / 'python'}" in message
    command = next(line.strip() for line in message.splitlines() if "-m venv" in line)
    assert f"-m venv '{env}' && '{env / 'bin' / 'python'}' -m pip install" in command
    assert f"-c '{root / 'requirements' / 'inference.lock.txt'}'" in command
    # A POSIX shell splits it back into the exact paths: print each argument on its own line.
    echoed = subprocess.run(["sh", "-c", "printf '%s\\n' " + command.replace("&&", "")], capture_output=True,
                            text=True).stdout.splitlines()
    requirements = root / "requirements"
    for path in (env, env / "bin" / "python", requirements / "inference.txt", requirements / "inference.lock.txt"):
        assert str(path) in echoed, (path, echoed)
    (root / "Makefile").parent.mkdir(parents=True)
    (root / "Makefile").write_text("")
    with pytest.raises(backend.BackendNotFound, match=f"make -C '{root}' venv-inference"):
        backend.find_backend_python("", root=root)


def test_the_default_environment_passed_in_from_the_bpy_side_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    env = tmp_path / "user" / "backend"
    backend.set_default_env(env)
    try:
        with pytest.raises(backend.BackendNotFound, match=f"looked at {env / 'bin' / 'python'}"):
            backend.find_backend_python("", root=tmp_path)
        (env / "bin").mkdir(parents=True)
        os.symlink(sys.executable, env / "bin" / "python")
        assert backend.find_backend_python("", root=tmp_path) == env / "bin" / "python"
    finally:
        backend.set_default_env(None)


def test_a_wrong_configured_path_is_reported_not_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv(backend.ENV_VAR, str(tmp_path / "nope" / "python"))
    with pytest.raises(backend.BackendNotFound, match=r"from \$RUBBLE_BACKEND_PYTHON\) does not exist"):
        backend.find_backend_python("", root=REPO)
    assert backend.find_backend_python(sys.executable, root=tmp_path) == backend.Path(sys.executable)


def test_cli_fails_fast_with_the_fix_before_rendering(tmp_path, small_preset):
    from conftest import run_cli
    env = {backend.ENV_VAR: str(tmp_path / "missing-venv" / "bin" / "python")}
    result = run_cli("shot", str(tmp_path / "shot"), "--preset", str(small_preset), env=env, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "does not exist" in result.stderr and "venv-inference" in result.stderr
    assert not (tmp_path / "shot" / "passes").exists(), "it rendered before checking the backend"


def test_events_of_an_unknown_major_version_are_refused():
    ok = backend.parse_event(json.dumps({"schema": "rubble.events/1", "type": "progress"}))
    assert ok["type"] == "progress"
    with pytest.raises(backend.BackendError, match="event schema 'rubble.events/2'"):
        backend.parse_event(json.dumps({"schema": "rubble.events/2", "type": "progress"}))
    with pytest.raises(backend.BackendError, match="not an event"):
        backend.parse_event("Loading pipeline components...")


def test_backend_refuses_an_unknown_shot_schema_through_the_real_subprocess(tmp_path, backend_python):
    shot = tmp_path / "shot"
    shot.mkdir()
    (shot / "shot.json").write_text(json.dumps({"schema": "rubble.shot/2"}))
    run = backend.BackendRun(["validate", str(shot)], shot, backend_python)
    events = list(run.events())
    with pytest.raises(backend.BackendError) as err:
        run.finish()
    assert any(e["type"] == "error" for e in events), events
    assert "rubble.shot/2" in str(err.value) and "rubble.shot/1" in str(err.value)
    assert run.proc.returncode == 1


def unknown_schema_shot(directory):
    directory.mkdir()
    (directory / "shot.json").write_text(json.dumps({"schema": "rubble.shot/2"}))
    return directory


def closed_port() -> int:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_client_falls_back_to_a_subprocess_when_no_warm_backend_answers(tmp_path, monkeypatch, backend_python):
    shot = unknown_schema_shot(tmp_path / "shot")
    state = tmp_path / "serve.json"
    monkeypatch.setenv(backend.SERVE_FILE_ENV, str(state))
    # No state file; then the file of a server killed without removing it (nothing listens on its port).
    for contents in (None, {"schema": backend.SERVE_SCHEMA, "port": closed_port(), "token": "t", "pid": 1}):
        if contents is not None:
            state.write_text(json.dumps(contents))
        run = backend.BackendRun(["validate", str(shot)], shot, backend_python)
        assert not run.on_server and run.proc is not None
        events = list(run.events())
        with pytest.raises(backend.BackendError, match="rubble.shot/2"):
            run.finish()
        assert [e["type"] for e in events] == ["error"] and run.proc.returncode == 1


def test_the_client_runs_commands_on_the_warm_backend_when_it_answers_the_token(tmp_path, monkeypatch, backend_python):
    shot = unknown_schema_shot(tmp_path / "shot")
    state = tmp_path / "state" / "serve.json"
    monkeypatch.setenv(backend.SERVE_FILE_ENV, str(state))
    assert backend.server_request("status") is None
    server = backend.start_server(backend_python, tmp_path / "serve.log")  # what Preferences > Start Warm Backend runs
    try:
        import time
        deadline = time.monotonic() + 60
        while (status := backend.server_request("status")) is None:
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.05)
        assert status["pid"] == server.pid and status["busy"] is False
        run = backend.BackendRun(["validate", str(shot)], shot, backend_python)
        assert run.on_server and run.proc is None and run.server_pid == server.pid
        events = list(run.events())
        with pytest.raises(backend.BackendError) as err:
            run.finish()
        assert [e["type"] for e in events] == ["error"], events
        assert "rubble.shot/2" in str(err.value) and "rubble.shot/1" in str(err.value)
        assert "rubble.shot/2" in run.log_path.read_text(), "the server's stderr for the run goes to the shot's log"
        # The stages relay a run on the server as they relay a process (draft, estimate, preview once
        # ended with AttributeError there: a server run has no process to poll).
        from types import SimpleNamespace

        from addon import pipeline

        job = SimpleNamespace(shot_dir=shot, weights=None, tiny_model=None, backend_python=backend_python,
                              cancel_requested=False)
        with pytest.raises(backend.BackendError, match="rubble.shot/2"):
            list(pipeline.relay_backend(job, "estimate", ["validate", str(shot)]))
        # The same file with another token: that server is not ours to use, so a subprocess runs it.
        forged = tmp_path / "forged.json"
        forged.write_text(json.dumps({**json.loads(state.read_text()), "token": "not-the-token"}))
        monkeypatch.setenv(backend.SERVE_FILE_ENV, str(forged))
        run = backend.BackendRun(["validate", str(shot)], shot, backend_python)
        assert not run.on_server and run.proc is not None
        list(run.events())
        with pytest.raises(backend.BackendError, match="rubble.shot/2"):
            run.finish()
        monkeypatch.setenv(backend.SERVE_FILE_ENV, str(state))
        assert backend.server_request("stop")["type"] == "stopping"
        assert server.wait(timeout=30) == 0, (tmp_path / "serve.log").read_text()
    finally:
        if server.poll() is None:
            server.kill()
    assert not state.exists(), "a stopped server leaves its state file behind"
    assert backend.server_request("status") is None
