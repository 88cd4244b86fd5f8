"""Farm chunks: the bake is saved once in shot.blend, so passes rendered in separate
processes, chunk by chunk, equal passes rendered in one go."""
import numpy as np
import OpenEXR

from conftest import run_cli


def _pixels(path):
    return {name: channel.pixels for part in OpenEXR.File(str(path)).parts
            for name, channel in part.channels.items()}


def test_chunked_passes_equal_one_run(tmp_path, small_preset, backend_python):
    """...and so do the control maps of every kind (depth, normal, clay, flow, occlusion,
    disocclusion, masks), derived chunk by chunk as a farm would, byte for byte."""
    import subprocess

    from conftest import REPO
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
    for shot, frames in ((whole, None), (chunked, "1-2"), (chunked, "3-4")):
        extra = ["--frames", frames] if frames else []
        run = subprocess.run([str(backend_python), "-m", "inference", "control", str(shot), *extra], cwd=REPO,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
    maps = sorted(p.relative_to(whole) for p in (whole / "control").rglob("*") if p.suffix in (".png", ".npy"))
    kinds = {p.parts[1] if p.parts[1] not in ("flow", "mask") else "/".join(p.parts[1:3]) for p in maps}
    assert {"depth", "normal", "clay", "flow/forward", "flow/backward", "flow/occlusion", "flow/disocclusion",
            "mask/building", "mask/ground", "mask/debris"} <= kinds, kinds
    assert maps == sorted(p.relative_to(chunked) for p in (chunked / "control").rglob("*") if p.suffix in (".png", ".npy"))
    for path in maps:
        assert (whole / path).read_bytes() == (chunked / path).read_bytes(), f"{path} differs between chunked and whole"


def test_parallel_chunks_keep_each_others_stamps_and_generate_runs(tmp_path, small_preset, backend_python,
                                                                  tiny_model_dir):
    """Four one-frame chunks at once, as a farm runs them, after one bake: `generate` must
    find every frame's passes stamped (it refused with "missing or stale" when they raced)."""
    import os
    import subprocess
    import sys

    from conftest import REPO
    shot = tmp_path / "shot"
    base = ["-m", "addon.cli", "shot", str(shot), "--preset", str(small_preset)]
    baked = run_cli(*base[2:], "--stages", "build")
    assert baked.returncode == 0, baked.stderr[-2000:]
    chunks = [subprocess.Popen([sys.executable, *base, "--stages", "passes", "--frames", f"{f}-{f}"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
              for f in range(1, 5)]
    for proc in chunks:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-2000:]
    generated = run_cli(*base[2:], "--stages", "generate", "--backend-python", str(backend_python),
                        "--tiny-model", str(tiny_model_dir))
    assert generated.returncode == 0, generated.stderr[-3000:]
    assert all((shot / "frames" / f"{f:04d}.png").is_file() for f in range(1, 5))
