"""Fixtures for the add-on tests: they run in the Blender-side environment (bpy wheel)."""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def write_preset(path: Path, **overrides) -> Path:
    """The default preset with some sections overridden: {"shot": {"frame_end": 4}}."""
    data = tomllib.loads((REPO / "presets" / "default.toml").read_text())
    for section, values in overrides.items():
        data[section].update(values)
    lines = [f'schema = "{data.pop("schema")}"', f'name = "{data.pop("name")}"']
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"')
    path.write_text("\n".join(lines).replace("True", "true").replace("False", "false") + "\n")
    return path


# A 4-frame shot small enough to render and generate in well under a minute on 2 cores.
SMALL_SHOT = {
    "shot": {"frame_start": 1, "frame_end": 4, "resolution": [96, 64]},
    "building": {"storeys": 2, "bays_x": 2, "bays_y": 1},
    "trigger": {"frame": 1},
    "render": {"samples": 2},
    "look": {"steps": 2},
    "model": {"width": 64, "height": 64, "window": 4, "overlap": 1},
}


@pytest.fixture
def small_preset(tmp_path) -> Path:
    return write_preset(tmp_path / "small.toml", **SMALL_SHOT)


@pytest.fixture(scope="session")
def backend_python() -> Path:
    """The backend environment, made by `make venv-inference`; the end-to-end tests need it."""
    value = os.environ.get("RUBBLE_BACKEND_PYTHON") or str(REPO / ".venv-inference" / "bin" / "python")
    if not Path(value).exists():
        pytest.fail(f"backend environment missing at {value}: run `make venv-inference` (make test does)")
    return Path(value)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Where the backend builds the tiny smoke-test model on first use (once per session)."""
    return tmp_path_factory.mktemp("tiny") / "tiny-model"


def run_cli(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """The headless CLI in a fresh Blender process, as a farm would run it."""
    return subprocess.run([sys.executable, "-m", "addon.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})
