"""What the panel and the buttons' polls know about the shot: a problem with the settings,
a missing backend, a run in progress, each stage's state (core/stage_status.py).

Panels redraw and polls run many times a second; the stamps and the preset are read at
most every half second (and at once after a run ends: `invalidate`)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import bpy

from .. import pipeline
from ..core import stage_status
from ..core.backend import BackendError, find_backend_python
from ..core.preset import PresetError
from .preferences import backend_python_preference
from .presets import current_preset

REFRESH_S = 0.5


class ShotFolderError(ValueError):
    """The shot folder setting does not name a folder we may write to."""


def resolve_shot_dir(setting: str) -> str:
    """The shot folder as an absolute path. A blend-relative path (the default
    `//rubble_shot`) in a file that was never saved would land in Blender's working
    directory (the home folder, `/` or Program Files), so it is refused instead."""
    if not setting.strip():
        raise ShotFolderError("No shot folder is set: pick a shot folder in the Rubble panel.")
    if setting.startswith("//") and not bpy.data.filepath:
        raise ShotFolderError(f"The shot folder {setting!r} is relative to the .blend file, which was never "
                              "saved: save the .blend first, or pick a shot folder.")
    path = bpy.path.abspath(setting)
    if not os.path.isabs(path):
        raise ShotFolderError(f"The shot folder {setting!r} is a relative path: pick a shot folder "
                              "(or save the .blend and use a path starting with //).")
    return path


@dataclass(frozen=True)
class Overview:
    setup_error: str | None          # shot folder or preset: nothing can run
    backend_error: str | None        # no backend: Generate cannot run
    running: str | None              # the shot folder of the run in progress
    states: dict | None              # stage -> stage_status.StageState, when the settings are valid
    shot_dir: str | None = None
    frames: range | None = None      # the preset's frames
    estimate: str | None = None      # the shot's last estimate (<shot>/estimate.json), as the panel says it


_cache: tuple | None = None  # (key, time, Overview)


def invalidate() -> None:
    global _cache
    _cache = None


def _running_job():
    from .operators import RUBBLE_OT_generate_final  # the operators use this module's polls
    return RUBBLE_OT_generate_final.running_job


def _compute(context) -> Overview:
    settings = context.scene.rubble
    job = _running_job()
    running = str(job.shot_dir) if job is not None else None
    try:
        backend_error = None
        find_backend_python(backend_python_preference(context))
    except BackendError as exc:
        backend_error = f"No backend: Preferences > Add-ons > Rubble > Install Backend. {exc}"
    try:
        shot_dir = resolve_shot_dir(settings.shot_dir)
        preset = current_preset(context)  # with the look edited in the Preset sub-panel, as a run uses it
    except (ShotFolderError, PresetError) as exc:
        return Overview(str(exc), backend_error, running, None)
    weights = None if settings.weights == "PRESET" else settings.weights
    job = pipeline.ShotJob(shot_dir=shot_dir, preset=preset, weights=weights)
    try:
        states = job.stage_states()
    except OSError:  # e.g. a file where the folder should be: a run reports it in its own words
        states = None
    return Overview(None, backend_error, running, states, shot_dir, job.shot_frames(), last_estimate(shot_dir))


def last_estimate(shot_dir: str) -> str | None:
    """"Estimate: about 4 minutes on this device for this shot, peak memory about 6.1 GB" from the
    backend's <shot>/estimate.json (inference/estimate.py), or None before the first estimate."""
    import json

    from .operators import estimate_memory

    try:
        record = json.loads((Path(shot_dir) / "estimate.json").read_text(encoding="utf-8"))
        text = f"Estimate: {record['message']}{estimate_memory(record)}"
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return text + (" (tiny model)" if record.get("smoke_test") else "")


def overview(context) -> Overview:
    global _cache
    settings = context.scene.rubble
    key = (context.scene.name, settings.shot_dir, settings.preset_path, settings.weights,
           backend_python_preference(context), _running_job() is not None, bpy.data.filepath)
    now = time.monotonic()
    if _cache is None or _cache[0] != key or now - _cache[1] > REFRESH_S:
        _cache = (key, now, _compute(context))
    return _cache[2]


def blocked_reason(context, stage: str, check_backend: bool = True) -> str | None:
    """Why the button of `stage` ("final": Generate Final) is greyed out, or None."""
    view = overview(context)
    backend_error = view.backend_error if check_backend else None
    return stage_status.blocked_reason(stage, view.states, view.setup_error, backend_error, view.running)
