"""`shot.json`: what a shot directory holds, the contract with the backend (docs/contract.md)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .files import write_json_atomic

SCHEMA = "rubble.shot/1"
PASSES_PATTERN = "passes/{frame:04d}.exr"

# Object pass index -> role; the backend turns these into masks.
ROLE_INDEX = {"building": 1, "ground": 2, "debris": 3}
# An artist's role name (the rubble_role property, scene/roles.py): safe as a folder name under control/mask/.
ARTIST_ROLE_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")


class ShotManifestError(ValueError):
    pass


def camera_record(matrix_world, lens_mm: float, sensor_width_mm: float, sensor_height_mm: float,
                  sensor_fit: str, clip_start: float, clip_end: float) -> dict[str, Any]:
    return {
        "matrix_world": [[float(v) for v in row] for row in matrix_world],
        "lens_mm": float(lens_mm),
        "sensor_width_mm": float(sensor_width_mm),
        "sensor_height_mm": float(sensor_height_mm),
        "sensor_fit": sensor_fit,
        "clip_start": float(clip_start),
        "clip_end": float(clip_end),
    }


def build_manifest(preset_dict: dict[str, Any], cameras: dict[int, dict[str, Any]],
                   created_by: dict[str, str], fragments: dict[str, dict] | None = None,
                   moved: dict[int, list[int]] | None = None, artist_roles: dict[str, int] | None = None,
                   tagged: dict[str, str] | None = None) -> dict[str, Any]:
    """`fragments`: pass index -> {role, element, kind, material} of each destruction fragment;
    `moved`: frame -> pass indices of the fragments that moved from rest by then;
    `artist_roles`: role -> pass index of the roles the artist tagged (scene/roles.py);
    `tagged`: object name -> role of the artist's objects the shot links."""
    shot = preset_dict["shot"]
    roles = {str(index): role for role, index in ROLE_INDEX.items()}
    roles.update({str(index): role for role, index in (artist_roles or {}).items()})
    roles.update({index: record["role"] for index, record in (fragments or {}).items()})
    extra = {"tagged": dict(tagged)} if tagged else {}
    if fragments is not None:
        extra["fragments"] = fragments
    if moved is not None:
        extra["moved"] = {str(frame): indices for frame, indices in sorted(moved.items())}
    return {
        "schema": SCHEMA,
        "frame_start": shot["frame_start"],
        "frame_end": shot["frame_end"],
        "fps": shot["fps"],
        "resolution": list(shot["resolution"]),
        "seed": shot["seed"],
        "passes": PASSES_PATTERN,
        "roles": roles,
        "camera": {str(frame): record for frame, record in sorted(cameras.items())},
        "preset": preset_dict,
        "created_by": created_by,
        **extra,
    }


def write_manifest(shot_dir: Path, manifest: dict[str, Any]) -> Path:
    path = Path(shot_dir) / "shot.json"
    write_json_atomic(path, manifest)
    return path


def read_manifest(shot_dir: Path) -> dict[str, Any]:
    path = Path(shot_dir) / "shot.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ShotManifestError(f"{path} does not exist: run the build and bake stages first") from None
    except json.JSONDecodeError as exc:
        raise ShotManifestError(f"{path} is not valid JSON ({exc}); delete it and re-run the bake stage") from None
    schema = data.get("schema", "<missing>")
    family, _, major = str(schema).partition("/")
    if family != "rubble.shot" or major.split(".")[0] != SCHEMA.rsplit("/", 1)[1]:
        raise ShotManifestError(
            f"{path} has schema {schema!r}; this Rubble reads {SCHEMA!r}. "
            "Re-create the shot with this version, or update Rubble.")
    return data
