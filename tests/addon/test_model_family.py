"""[model] family: the add-on accepts both families, refuses an unknown one with the list, and
refuses what Wan2.1-VACE cannot run (core/model_family.py) when the preset is loaded."""
import tomllib

import pytest

from addon import cli
from addon.core.preset import PresetError, load_preset, preset_from_dict
from conftest import REPO, write_preset

WAN_PRESETS = ("wan_vace_1_3b.toml", "wan_vace_14b.toml")


def wan_data(**model) -> dict:
    data = tomllib.loads((REPO / "presets" / "wan_vace_1_3b.toml").read_text(encoding="utf-8"))
    data["model"].update(model)
    return data


@pytest.mark.parametrize("name", WAN_PRESETS)
def test_the_wan_presets_load_as_family_wan_vace(name):
    preset = load_preset(REPO / "presets" / name)
    assert preset.model.family == "wan-vace"
    assert preset.model.base.startswith("Wan-AI/Wan2.1-VACE-") and len(preset.model.base_revision) == 40
    assert (preset.model.window - 1) % 4 == 0 and preset.long_shot.mode == "windows"


def test_check_preset_refuses_an_unknown_family_and_lists_the_known_ones(tmp_path, capsys):
    bad = write_preset(tmp_path / "bad.toml", model={"family": "sora"})
    assert cli.main(["check-preset", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "model.family: 'sora' is not one of 'animatediff-controlnet', 'wan-vace'" in err
    good = REPO / "presets" / "wan_vace_1_3b.toml"
    assert cli.main(["check-preset", str(good)]) == 0


def test_wan_settings_it_cannot_run_are_refused_with_what_would_do():
    data = wan_data(window=80, width=840)
    data["long_shot"]["mode"] = "free_noise"
    data["controls"] = data["controls"] * 2
    data["controls"][1] = {**data["controls"][1], "kind": "normal"}
    with pytest.raises(PresetError) as err:
        preset_from_dict(data)
    text = str(err.value)
    assert "model.window: 80 must be 4k+1 frames for family 'wan-vace'" in text and "e.g. 77 or 81" in text
    assert "model.width/height: 840x480 must be multiples of 16" in text
    assert "long_shot.mode: 'free_noise' is not available for family 'wan-vace'" in text
    assert "exactly one [[controls]] entry" in text
    with pytest.raises(PresetError, match=r"window - overlap \(81 - 16\) must be a multiple of 4.*overlap 13"):
        preset_from_dict(wan_data(overlap=16))


def test_animatediff_keeps_its_window_limit_while_wan_may_go_to_81(tmp_path):
    with pytest.raises(PresetError, match="model.window: 65 is above the maximum 64 for family 'animatediff-controlnet'"):
        load_preset(write_preset(tmp_path / "long.toml", model={"window": 65}))
    assert preset_from_dict(wan_data(window=81, overlap=17)).model.window == 81
