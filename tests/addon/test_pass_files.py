"""The passes stage's disk check (addon/core/pass_files.py): bpy-free arithmetic; the size of a
real render is checked against it in test_passes.py."""
from pathlib import Path

from addon.core import pass_files

GB = 10**9


def test_a_shot_that_fits_passes_and_one_that_does_not_says_what_it_needs_and_what_to_do():
    per_frame = pass_files.frame_bytes(1920, 1080, True, "none")
    assert per_frame == 1920 * 1080 * 52 + 1080 * 6 * 20  # 4 float32 data passes (9 channels), 2 half RGBA
    where = Path("/shots/tower")
    assert pass_files.disk_problem(1920, 1080, True, "none", 240, 240 * per_frame + pass_files.HEADROOM, where) is None
    message = pass_files.disk_problem(1920, 1080, True, "none", 240, 12 * GB, where)
    assert "240 frames at 1920x1080 need about 25.9 GB" in message and "/shots/tower has 12.0 GB free" in message
    assert '"rle" (about 15.5 GB)' in message and '"zip" (about 6.7 GB)' in message
    # A compressed file's size depends on the scene: no refusal on a guess.
    assert pass_files.disk_problem(1920, 1080, True, "zip", 240, 1 * GB, where) is None


def test_without_the_denoiser_there_is_no_noisy_image_pass():
    assert pass_files.frame_bytes(100, 10, False, "none") == 100 * 10 * 44 + 10 * 6 * 20
