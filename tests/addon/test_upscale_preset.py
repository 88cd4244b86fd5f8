"""[upscale] and the aspect rule: the generation size keeps the shot's aspect, or the preset is refused
with the sizes that would fit (addon/core/upscale.py, addon/core/checks.py)."""
import re

import pytest

from addon.core import checks
from addon.core.preset import PresetError, load_preset, preset_from_dict
from conftest import REPO


def with_changes(**sections):
    data = load_preset().to_dict()
    for section, values in sections.items():
        data[section] = {**data[section], **values}
    return data


def test_the_default_is_the_cheap_resize_and_diffusion_is_one_switch_away():
    default = load_preset().upscale
    assert (default.method, default.format) == ("lanczos", "png8")
    diffusion = preset_from_dict(with_changes(upscale={"method": "diffusion", "format": "exr_half"})).upscale
    assert diffusion.model == "stabilityai/stable-diffusion-x4-upscaler" and len(diffusion.revision) == 40
    assert (diffusion.method, diffusion.steps, diffusion.noise_level, diffusion.format) == ("diffusion", 20, 20, "exr_half")
    assert preset_from_dict(with_changes(upscale={"method": "diffusion"})).to_dict()["upscale"]["method"] == "diffusion"


def test_bad_upscale_keys_are_each_refused():
    bad = {"method": "bicubic", "format": "tiff", "noise_level": 351, "steps": 0, "guidance_scale": float("nan"),
           "revision": "main..x", "tile": 2}
    with pytest.raises(PresetError) as err:
        preset_from_dict(with_changes(upscale=bad))
    text = str(err.value)
    for expected in ("upscale.method: 'bicubic' is not one of 'lanczos', 'diffusion'",
                     "upscale.format: 'tiff' is not one of 'png8', 'png16', 'exr_half'",
                     "upscale.noise_level: 351 is above the maximum 350 (the upscaler's max_noise_level)",
                     "upscale.steps: 0 is below the minimum 1", "upscale.guidance_scale: nan is not a finite number",
                     "upscale.revision: 'main..x' is not a revision", "upscale.tile: unknown key"):
        assert expected in text, f"{expected!r} missing from:\n{text}"


def test_the_old_demo_stretch_is_refused_with_the_sizes_that_fit():
    """The demo used to generate 512x320 (1.60) for its 320x192 shot (1.67): a 4 % stretch."""
    with pytest.raises(PresetError) as err:
        preset_from_dict(with_changes(model={"width": 512, "height": 320}))
    (problem,) = err.value.problems
    assert "512x320 (1.600) stretches the shot's resolution 320x192 (1.667) by 4.0%" in problem
    offered = [(int(w), int(h)) for w, h in re.findall(r"width = (\d+), height = (\d+)", problem)]
    assert offered[0] == (520, 312) and len(offered) == 3
    for width, height in offered:  # what the message says to write is accepted
        assert width % 8 == 0 and height % 8 == 0 and abs(width * height - 512 * 320) < 0.1 * 512 * 320
        preset_from_dict(with_changes(model={"width": width, "height": height}))


def test_a_hd_shot_gets_sizes_on_the_grid_its_family_needs():
    problem = checks.aspect_problem((1920, 1080), (512, 320), 16, 64, 2048)
    offered = [(int(w), int(h)) for w, h in re.findall(r"width = (\d+), height = (\d+)", problem)]
    assert offered and all(w % 16 == 0 and h % 16 == 0 for w, h in offered), problem
    assert all(checks.aspect_error((1920, 1080), size) <= checks.ASPECT_TOLERANCE for size in offered)
    assert "multiples of 16" in problem
    assert checks.aspect_problem((1920, 1080), (1024, 576), 16, 64, 2048) is None, "16:9 exactly"


def test_a_shot_no_size_on_the_grid_can_follow_is_told_to_change():
    problem = checks.aspect_problem((2000, 16), (512, 320), 8, 64, 2048)
    assert "no multiple of 8 from 64 to 2048 fits, so change shot.resolution" in problem


def test_the_shipped_presets_keep_their_shots_aspect():
    for path in (REPO / "presets").glob("*.toml"):
        preset = load_preset(path)
        size = (preset.model.width, preset.model.height)
        assert checks.aspect_error(preset.shot.resolution, size) <= checks.ASPECT_TOLERANCE, path.name
