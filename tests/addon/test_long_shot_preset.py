"""[long_shot] and [memory]: defaults, every bad value reported by key, and what the backend reads."""
import pytest

from addon.core.preset import PresetError, load_preset, preset_from_dict


def test_defaults_are_free_noise_with_split_inference_and_offload_retry():
    preset = load_preset()
    assert preset.long_shot.mode == "free_noise"
    assert (preset.long_shot.context_length, preset.long_shot.context_stride) == (16, 4)
    assert preset.memory.dtype == "auto" and preset.memory.offload == "none"
    assert preset.memory.split_inference is True and preset.memory.retry_with_offload is True
    no_sections = {k: v for k, v in preset.to_dict().items() if k not in ("long_shot", "memory")}
    assert preset_from_dict(no_sections).long_shot == preset.long_shot, "a preset without the sections gets the defaults"


def test_bad_values_are_reported_by_key():
    data = load_preset().to_dict()
    data["long_shot"].update(mode="sliding", weighting_scheme="gauss", context_length=0)
    data["memory"].update(dtype="fp8", vae_slicing=1, offload="disk", cache="yes")
    with pytest.raises(PresetError) as err:
        preset_from_dict(data)
    text = str(err.value)
    for expected in ("long_shot.mode: 'sliding' is not one of 'free_noise', 'windows'",
                     "long_shot.weighting_scheme: 'gauss'", "long_shot.context_length: 0 is below the minimum 1",
                     "memory.dtype: 'fp8'", "memory.vae_slicing: expected bool", "memory.offload: 'disk'",
                     "memory.cache: unknown key"):
        assert expected in text, f"{expected!r} missing from:\n{text}"


def test_a_stride_longer_than_the_context_is_refused():
    data = load_preset().to_dict()
    data["long_shot"].update(context_length=8, context_stride=12)
    with pytest.raises(PresetError, match="long_shot.context_stride: 12 must not exceed long_shot.context_length 8"):
        preset_from_dict(data)


def test_the_sections_travel_to_shot_json_as_plain_data():
    data = load_preset().to_dict()
    assert data["long_shot"]["mode"] == "free_noise" and data["memory"]["vae_tiling"] is False
