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


def _toml_value(value) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def write_preset(path: Path, **overrides) -> Path:
    """The default preset with some sections overridden: {"shot": {"frame_end": 4}}.
    A list value (`triggers=[...]`) replaces the whole array of tables."""
    data = tomllib.loads((REPO / "presets" / "default.toml").read_text())
    for section, values in overrides.items():
        if isinstance(values, list):
            data[section] = values
        else:
            data.setdefault(section, {}).update(values)
    lines = [f'schema = "{data.pop("schema")}"', f'name = "{data.pop("name")}"']
    for section, values in data.items():
        if isinstance(values, list):  # [[section]] tables
            for table in values:
                lines.append(f"[[{section}]]")
                lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
            continue
        tables = {k: v for k, v in values.items() if isinstance(v, dict)}  # [section.name] sub-tables
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items() if key not in tables]
        for name, table in tables.items():
            lines.append(f"[{section}.{name}]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# A 4-frame shot small enough to render and generate in well under a minute on 2 cores.
SMALL_SHOT = {
    "shot": {"frame_start": 1, "frame_end": 4, "resolution": [96, 64]},
    "building": {"storeys": 2, "bays_x": 2, "bays_y": 1},
    "triggers": [{"kind": "column_removal", "frame": 1}],
    "simulation": {"preroll_frames": 1, "warmup_frames": 1},  # the pre-roll must fit before frame 1
    "render": {"samples": 2},
    "look": {"steps": 2},
    "model": {"width": 96, "height": 64, "window": 4, "overlap": 1},  # the shot's aspect (addon/core/checks.py)
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
