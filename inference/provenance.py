"""provenance.json: what made the frames, for disclosure and for reproducing them."""

import json
import platform
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

from . import __version__, files, long_shot, noise_warp, regenerate, tiny_model, upscale, video_to_video, windows
from .models import controlnet_role
from .shot import Shot

SCHEMA = "rubble.provenance/1"
DISCLOSURE = "AI-generated"


def _window_records(shot: Shot) -> list[dict]:
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
    return records


def describes_current_frames(shot: Shot) -> bool:
    """True when provenance.json, written after the frames and the contact sheet, names exactly
    today's window records and [upscale] settings and those files are all there: blending and
    upscaling again would rewrite the same pixels (a farm task run twice must change nothing)."""
    path = shot.directory / "provenance.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    outputs = [p for f in shot.frames for p in (upscale.blended_path(shot, f), *upscale.delivered_paths(shot, f).values())]
    outputs.append(shot.directory / "contact_sheet.png")
    settings = {k: v for k, v in (saved.get("upscale") or {}).items() if k in asdict(shot.upscale)}
    return (saved.get("windows") == _window_records(shot) and settings == asdict(shot.upscale)
            and saved.get("regenerate") == regenerate.record(shot)
            and saved.get("resolution", {}).get("delivered") == list(shot.resolution) and all(p.is_file() for p in outputs))


def write(shot: Shot, model_description: dict, **measured) -> None:
    """`measured`: top-level keys measured on the blended frames (e.g. temporal_warp_error) or recorded
    by later stages ("upscale" and "resolution": inference/upscale.py provenance())."""
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
            "width": shot.model.width,
            "height": shot.model.height,
            "window": shot.model.window,
            "overlap": shot.model.overlap,
            "used": model_description,  # what actually ran: real ids + hashes, or the tiny model
        },
        # Every model loaded, by role: id (hub id or folder), revision and the commit it resolved to.
        "models": models_used(model_description),
        "controls": controls(shot, model_description),
        "seed": shot.seed,
        "look": asdict(shot.look),
        "frames": [shot.frame_start, shot.frame_end],
        "versions": {
            "rubble": __version__,
            "python": platform.python_version(),
            **{name: metadata.version(name) for name in ("torch", "diffusers", "transformers")},
        },
        "windows": records,
        "noise": noise_warp.provenance(shot),
        "video_to_video": video_to_video.provenance(shot),
        "regenerate": regenerate.record(shot),  # None: every pixel generated
        **measured,
        "long_shot": long_shot.record(shot, shot.memory.split_inference),
        "memory": asdict(shot.memory),
    }
    files.write_json(shot.directory / "provenance.json", data)


def read(shot: Shot) -> dict | None:
    path = shot.directory / "provenance.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
def models_used(model_description: dict) -> dict[str, dict]:
    """role -> {"id", "revision", "commit"} for every model that ran (models.describe's sources)."""
    return {role: {key: source[key] for key in ("id", "revision", "commit")}
            for role, source in sorted(model_description["sources"].items())}


def controls(shot: Shot, model_description: dict) -> list[dict]:
    """The [[controls]] in the order they ran, each with what was loaded for it: the real ControlNet's
    id, revision, resolved commit and file hashes (as "model.used" holds them), or the tiny model's
    ControlNet folder and its tree hash."""
    from . import families

    out = []
    for control in shot.model.controls:
        if not getattr(families.get(shot.model.family), "CONTROL_MODELS", True):
            # The base model reads the control itself (Wan VACE): the control's own model is not loaded.
            used = {"by": "base", **model_description["sources"]["base"]}
        elif model_description["smoke_test"]:
            folder = Path(model_description["tiny_model"]) / tiny_model.controlnet_folder(control.kind)
            used = {"weights": model_description["weights"], "tiny_model": str(folder),
                    "tiny_model_sha256": files.sha256_tree(folder)}
        else:
            used = model_description["sources"][controlnet_role(control.kind)]
        out.append({**asdict(control), "maps": f"control/{control.kind}/", "used": used})
    return out


def read_smoke_test(shot: Shot) -> bool | None:
    """True/False from provenance.json, None when there is none yet."""

    path = shot.directory / "provenance.json"
    if not path.is_file():
        return None
    return bool(json.loads(path.read_text(encoding="utf-8"))["smoke_test"])
