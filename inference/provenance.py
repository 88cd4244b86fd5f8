"""provenance.json: what made the frames, for disclosure and for reproducing them."""

import json
import platform
from dataclasses import asdict
from importlib import metadata

from . import __version__, files, windows
from .shot import Shot

SCHEMA = "rubble.provenance/1"
DISCLOSURE = "AI-generated"


def _window_records(shot: Shot) -> list[dict]:
    plan = windows.plan(len(shot.frames), shot.model.window, shot.model.overlap)
    records = []
    for window in plan:
        record = windows.read_record(shot.directory, window)
        if record is not None:
            records.append(
                {
                    "index": record["index"],
                    "frames": record["frames"],
                    "inputs_sha256": record["inputs_sha256"],
                    "device": record["device"],
                    "seconds": record["seconds"],
                    "model_load_seconds": record["model_load_seconds"],
                }
            )
    return records


def describes_current_frames(shot: Shot) -> bool:
    """True when provenance.json, written after the frames and the contact sheet, names exactly
    today's window records and those files are all there: blending again would rewrite the same
    pixels (a farm task run twice must change nothing)."""
    path = shot.directory / "provenance.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    outputs = [shot.directory / "frames" / f"{f:04d}.png" for f in shot.frames] + [shot.directory / "contact_sheet.png"]
    return saved.get("windows") == _window_records(shot) and all(p.is_file() for p in outputs)


def write(shot: Shot, model_description: dict) -> None:
    records = _window_records(shot)
    data = {
        "schema": SCHEMA,
        "disclosure": DISCLOSURE,
        "smoke_test": model_description["smoke_test"],
        "weights": model_description["weights"],
        "model": {
            "family": shot.model.family,
            "base": shot.model.base,
            "base_revision": shot.model.base_revision,
            "motion_adapter": shot.model.motion_adapter,
            "motion_adapter_revision": shot.model.motion_adapter_revision,
            "controlnet": shot.model.controlnet,
            "controlnet_revision": shot.model.controlnet_revision,
            "width": shot.model.width,
            "height": shot.model.height,
            "window": shot.model.window,
            "overlap": shot.model.overlap,
            "used": model_description,  # what actually ran: real ids + hashes, or the tiny model
        },
        "seed": shot.seed,
        "look": asdict(shot.look),
        "frames": [shot.frame_start, shot.frame_end],
        "versions": {
            "rubble": __version__,
            "python": platform.python_version(),
            **{name: metadata.version(name) for name in ("torch", "diffusers", "transformers")},
        },
        "windows": records,
    }
    files.write_json(shot.directory / "provenance.json", data)


def read_smoke_test(shot: Shot) -> bool | None:
    """True/False from provenance.json, None when there is none yet."""

    path = shot.directory / "provenance.json"
    if not path.is_file():
        return None
    return bool(json.loads(path.read_text(encoding="utf-8"))["smoke_test"])
