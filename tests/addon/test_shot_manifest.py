"""shot.json round-trips, and a shot from an unknown schema version is refused clearly."""
import json

import pytest

from addon.core.preset import load_preset
from addon.core.shot_manifest import (SCHEMA, ShotManifestError, build_manifest, camera_record,
                                      read_manifest, write_manifest)


def _manifest():
    cams = {1: camera_record([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 5], [0, 0, 0, 1]], 35, 36, 24, "AUTO", 0.1, 100)}
    return build_manifest(load_preset().to_dict(), cams, {"rubble": "test"})


def test_round_trip(tmp_path):
    write_manifest(tmp_path, _manifest())
    data = read_manifest(tmp_path)
    assert data["schema"] == SCHEMA
    assert data["camera"]["1"]["matrix_world"][2][3] == 5.0
    assert data["roles"]["1"] == "building"
    assert not list(tmp_path.glob("*.tmp")), "the atomic write left its temporary file"


@pytest.mark.parametrize("schema", ["rubble.shot/2", "rubble.shot/10.1", "something/1", None])
def test_unknown_schema_is_refused(tmp_path, schema):
    data = _manifest()
    data["schema"] = schema
    (tmp_path / "shot.json").write_text(json.dumps(data))
    with pytest.raises(ShotManifestError, match="this Rubble reads 'rubble.shot/1'"):
        read_manifest(tmp_path)


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(ShotManifestError, match="run the build and bake stages"):
        read_manifest(tmp_path)
    (tmp_path / "shot.json").write_text("{not json")
    with pytest.raises(ShotManifestError, match="not valid JSON"):
        read_manifest(tmp_path)
