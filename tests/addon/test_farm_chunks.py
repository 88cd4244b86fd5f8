"""Farm chunks: the bake is saved once in shot.blend, so passes rendered in separate
processes, chunk by chunk, equal passes rendered in one go."""
import numpy as np
import OpenEXR

from conftest import run_cli


def _pixels(path):
    return {name: channel.pixels for part in OpenEXR.File(str(path)).parts
            for name, channel in part.channels.items()}


def test_chunked_passes_equal_one_run(tmp_path, small_preset):
    whole, chunked = tmp_path / "whole", tmp_path / "chunked"
    for args in ((whole, None), (chunked, "1-2"), (chunked, "3-4")):
        shot, frames = args
        extra = ["--frames", frames] if frames else []
        result = run_cli("shot", str(shot), "--preset", str(small_preset), "--stages", "passes", *extra)
        assert result.returncode == 0, result.stderr[-2000:]
    assert "bake: up to date, skipped" in result.stderr, "the second chunk re-simulated instead of using the bake"
    for frame in range(1, 5):
        a, b = _pixels(whole / "passes" / f"{frame:04d}.exr"), _pixels(chunked / "passes" / f"{frame:04d}.exr")
        assert a.keys() == b.keys()
        for name in a:
            assert np.array_equal(a[name], b[name]), f"frame {frame} {name} differs between chunked and whole"
