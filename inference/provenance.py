"""provenance.json: what made the frames, for disclosure and for reproducing them."""

import json
import platform
from dataclasses import asdict
from importlib import metadata

from . import __version__, files, long_shot, windows
from .shot import Shot

SCHEMA = "rubble.provenance/1"
DISCLOSURE = "AI-generated"


def write(shot: Shot, model_description: dict) -> None:
    plan = long_shot.plan(shot)
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
                    "dtype": record["inputs"]["runtime"]["dtype"],
                    "offload": record.get("offload", "none"),
                    "retried_with_offload": record.get("retried_with_offload", False),
                    "attention": record.get("attention"),
                }
            )
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
        "long_shot": long_shot.record(shot, shot.memory.split_inference),
        "memory": asdict(shot.memory),
    }
    files.write_json(shot.directory / "provenance.json", data)


def read_smoke_test(shot: Shot) -> bool | None:
    """True/False from provenance.json, None when there is none yet."""

    path = shot.directory / "provenance.json"
    if not path.is_file():
        return None
    return bool(json.loads(path.read_text(encoding="utf-8"))["smoke_test"])
