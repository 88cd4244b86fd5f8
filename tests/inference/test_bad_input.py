"""Bad passes and shot files: a clear error naming the file, the frame and the channel, never a
silently black or wrong map, and the maps already written stay."""

import errno
import json
import shutil

import numpy as np
import pytest

from conftest import make_shot, rewrite_channels, run_backend


def only_error(run):
    assert run.returncode == 1, run.stderr
    (error,) = run.of_type("error")
    return error


@pytest.mark.parametrize(
    ("channel", "value", "name"),
    [("ViewLayer.Depth.Z", np.nan, "Depth.Z"), ("ViewLayer.Normal.Y", np.inf, "Normal.Y"),
     ("ViewLayer.Vector.Z", -np.inf, "Vector.Z")],
)
def test_non_finite_pass_names_file_frame_and_channel(tmp_path, channel, value, name):
    shot = make_shot(tmp_path / "shot", frames=3)
    damaged = shot / "passes" / "0002.exr"

    def poison(channels):
        channels[channel][5, 7] = value
        channels[channel][6, 7] = value

    rewrite_channels(damaged, poison)
    error = only_error(run_backend("control", str(shot)))
    assert error["code"] == "non_finite_pass"
    assert str(damaged) in error["message"] and "frame 2" in error["message"] and f"channel {name}" in error["message"]
    assert "2 NaN or infinite pixels (first at x=7, y=5" in error["message"]
    assert "Re-render the passes for frame 2" in error["hint"]


def test_exr_with_a_part_cut_off_is_damaged_not_a_missing_pass(tmp_path):
    shot = make_shot(tmp_path / "shot", frames=3)
    damaged = shot / "passes" / "0002.exr"
    damaged.write_bytes(damaged.read_bytes()[:-40])  # the last part's (Object Index) pixels are cut
    error = only_error(run_backend("control", str(shot)))
    assert error["code"] == "corrupt_pass", error
    assert "damaged" in error["message"] and str(damaged) in error["message"]
    assert "Enable" not in error["hint"] and "Re-render the passes for frame 2" in error["hint"]


def test_maps_already_written_stay_when_a_pass_turns_bad(tmp_path):
    shot = make_shot(tmp_path / "shot", frames=3)
    assert run_backend("control", str(shot)).returncode == 0
    before = sorted(p.relative_to(shot) for p in (shot / "control").rglob("*") if p.is_file())

    def poison(channels):
        channels["ViewLayer.Depth.Z"][0, 0] = np.nan

    rewrite_channels(shot / "passes" / "0003.exr", poison)
    assert only_error(run_backend("control", str(shot)))["code"] == "non_finite_pass"
    after = sorted(p.relative_to(shot) for p in (shot / "control").rglob("*") if p.is_file())
    assert after == before, "a failed run must not delete the maps it could not replace"


def test_missing_camera_names_the_frames(tmp_path):
    shot = make_shot(tmp_path / "shot", frames=4)
    data = json.loads((shot / "shot.json").read_text())
    del data["camera"]["2"], data["camera"]["3"]
    (shot / "shot.json").write_text(json.dumps(data))
    error = only_error(run_backend("control", str(shot)))
    assert error["code"] == "missing_camera"
    assert "no camera for frames 2-3" in error["message"] and "shot.json" in error["message"]
    assert "Export the shot again" in error["hint"]


def test_a_full_disk_is_named_with_its_free_space_not_called_a_bug(tmp_path):
    """A write that fails for want of space (ENOSPC, a quota, or numpy's short write that has no
    errno while the disk is nearly full) is `disk_full`; any other OSError stays a bug report."""
    from inference.__main__ import FULL_DISK_BYTES, _disk_full

    message = _disk_full(tmp_path, OSError(errno.ENOSPC, "No space left on device"))
    assert str(tmp_path) in message and "MB free" in message and "No space left" in message
    assert _disk_full(tmp_path, OSError(errno.EDQUOT, "Disk quota exceeded")) is not None
    assert _disk_full(tmp_path, OSError(errno.EACCES, "Permission denied")) is None
    short_write = OSError("1843200 requested and 1572832 written")
    assert (_disk_full(tmp_path, short_write) is None) == (shutil.disk_usage(tmp_path).free >= FULL_DISK_BYTES)
