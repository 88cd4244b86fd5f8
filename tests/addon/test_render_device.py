"""The passes render on the GPU Cycles is configured with, else on the CPU, and say which.
This machine has no GPU: the tests check the fallback and the record."""
import json

import bpy
import pytest

from addon.scene import passes
from conftest import run_cli


@pytest.fixture
def cycles_prefs():
    prefs = bpy.context.preferences.addons["cycles"].preferences
    saved = prefs.compute_device_type
    yield prefs
    prefs.compute_device_type = saved


def test_no_compute_backend_configured_renders_on_the_cpu(cycles_prefs):
    cycles_prefs.compute_device_type = "NONE"
    assert passes.render_device() == {"device": "CPU", "compute_device_type": "NONE", "gpus": []}


def test_a_configured_backend_without_a_present_device_falls_back_to_the_cpu(cycles_prefs):
    """The preferences name CUDA (as a user's file may, copied from another machine) but
    no CUDA device exists here: rendering with device GPU would not be on a GPU."""
    cycles_prefs.compute_device_type = "CUDA"
    cycles_prefs.refresh_devices()
    for device in cycles_prefs.devices:
        device.use = True
    choice = passes.render_device()
    assert choice["device"] == "CPU" and choice["compute_device_type"] == "CUDA"
    scene = bpy.data.scenes.new("device test")
    try:
        from addon.core.preset import load_preset
        assert passes.configure(scene, load_preset()) == choice
        assert scene.cycles.device == "CPU"
    finally:
        bpy.data.scenes.remove(scene)


def test_a_chunk_records_and_reports_its_device(tmp_path, small_preset):
    shot = tmp_path / "shot"
    result = run_cli("shot", str(shot), "--preset", str(small_preset), "--stages", "passes", "--frames", "2-3")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "rendering frame 2 on CPU" in result.stderr
    record = json.loads((shot / "logs" / "passes-0002-0003.json").read_text())
    assert record["device"] == "CPU" and record["frames"] == [2, 3]
    assert record["blender"] == bpy.app.version_string and record["host"]
