"""The preset's [noise] section (read by inference/noise_warp.py): defaults, validation, and the stage key."""
import pytest

from addon.core.preset import PresetError, load_preset, preset_from_dict
from conftest import write_preset


def test_noise_defaults_to_fresh_and_a_warped_preset_loads(tmp_path):
    assert load_preset().noise.mode == "fresh"
    preset = load_preset(write_preset(tmp_path / "warped.toml", noise={"mode": "warped", "strength": 0.8}))
    assert (preset.noise.mode, preset.noise.strength) == ("warped", 0.8)
    assert preset.to_dict()["noise"]["mode"] == "warped", "shot.json carries the section to the backend"


def test_bad_noise_values_are_reported_by_key():
    data = load_preset().to_dict()
    data["noise"].update(mode="flowing", strength=1.5, lora="x")
    with pytest.raises(PresetError) as err:
        preset_from_dict(data)
    text = str(err.value)
    for expected in ("noise.mode: 'flowing' is not one of 'fresh', 'warped'",
                     "noise.strength: 1.5 is above the maximum 1.0", "noise.lora: unknown key"):
        assert expected in text, f"{expected!r} missing from:\n{text}"


def test_changing_the_noise_redoes_generate_and_not_the_passes(tmp_path):
    from addon import pipeline

    def job(name, **sections):
        return pipeline.ShotJob(shot_dir=tmp_path / "shot", preset=load_preset(write_preset(tmp_path / name, **sections)),
                                owns_session=True)

    fresh, warped = job("fresh.toml"), job("warped.toml", noise={"mode": "warped"})
    assert fresh.pass_key() == warped.pass_key()
    assert fresh.generate_key() != warped.generate_key()
