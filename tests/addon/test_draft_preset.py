"""[draft] (issue 22 item 2): defaults, strict validation by key, and the draft's size rule."""
import json
import math

import pytest

from addon.core import draft
from addon.core.preset import PresetError, load_preset, preset_from_dict
from addon.ui import shot_state
from test_panel import draw, enabled, labels, session  # noqa: F401  (session: the registered add-on)


def test_defaults_are_animatelcm_with_few_steps_at_half_size():
    preset = load_preset()
    assert preset.draft.motion_adapter == "wangfuyun/AnimateLCM"
    assert (preset.draft.steps, preset.draft.guidance_scale, preset.draft.scale) == (6, 1.5, 0.5)
    without = {k: v for k, v in preset.to_dict().items() if k != "draft"}
    assert preset_from_dict(without).draft == preset.draft, "a preset without [draft] gets the defaults"
    assert preset.to_dict()["draft"]["lora_weight_name"].endswith(".safetensors"), "it travels to shot.json"


def test_bad_values_are_reported_by_key():
    data = load_preset().to_dict()
    data["draft"].update(steps=20, guidance_scale=math.nan, scale=0.1, lora_scale=True, sampler="euler",
                         motion_adapter="../../etc")
    with pytest.raises(PresetError) as err:
        preset_from_dict(data)
    text = str(err.value)
    for expected in ("draft.steps: 20 is above the maximum 8", "draft.guidance_scale: nan is not a finite number",
                     "draft.scale: 0.1 is below the minimum 0.25", "draft.lora_scale: expected float",
                     "draft.sampler: unknown key", "draft.motion_adapter:"):
        assert expected in text, f"{expected!r} missing from:\n{text}"


def test_a_lora_must_be_safetensors():
    data = load_preset().to_dict()
    data["draft"]["lora_weight_name"] = "lcm.ckpt"
    with pytest.raises(PresetError, match="draft.lora_weight_name: 'lcm.ckpt' must name a .safetensors file"):
        preset_from_dict(data)
    data["draft"]["lora"] = ""  # no LoRA: its file name does not matter
    assert preset_from_dict(data).draft.lora == ""


def test_the_draft_size_keeps_multiples_of_8():
    assert draft.size(512, 320, 0.5) == (256, 160)
    assert draft.size(100, 60, 0.5) == (48, 32), "rounded down to the VAE's factor, at least 32"
    assert draft.size(128, 80, 0.25) == (32, 32)


def test_the_panel_has_draft_and_estimate_and_shows_the_last_estimate(session, tmp_path):  # noqa: F811
    drawn = draw()
    assert enabled(drawn, "rubble.draft") and enabled(drawn, "rubble.estimate")
    assert not [t for t in labels(drawn) if t.startswith("Estimate:")], "no estimate before the first"
    shot = tmp_path / "shot"
    shot.mkdir()
    (shot / "estimate.json").write_text(json.dumps({
        "message": "about 4 minutes on this device for this shot", "peak_memory_bytes": 6.1e9, "smoke_test": True}))
    assert "Estimate: about 4 minutes on this device for this shot, peak memory about 6.1 GB (tiny model)" \
        in labels(draw())
    (shot / "estimate.json").write_text("{torn")
    assert shot_state.last_estimate(str(shot)) is None, "a torn file shows nothing rather than failing the panel"
