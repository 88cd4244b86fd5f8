"""[look] strength and [regenerate] (read by inference/video_to_video.py and inference/regenerate.py):
defaults that keep text-to-video over every pixel, refusals at check-preset time, and the stage keys."""
import pytest

from addon import cli
from addon.core.preset import PresetError, load_preset, preset_from_dict
from conftest import write_preset


def test_defaults_are_text_to_video_over_every_pixel_and_the_sections_travel_to_shot_json(tmp_path):
    preset = load_preset()
    assert preset.look.strength == 1.0 and preset.regenerate.roles == () and preset.regenerate.plate == "clay"
    no_section = {k: v for k, v in preset.to_dict().items() if k != "regenerate"}
    assert preset_from_dict(no_section).regenerate == preset.regenerate, "a preset without [regenerate] gets the defaults"
    chosen = load_preset(write_preset(tmp_path / "v2v.toml", look={"strength": 0.6},
                                      regenerate={"roles": ["building", "debris", "car"], "feather_px": 8}))
    data = chosen.to_dict()
    assert data["look"]["strength"] == 0.6
    assert data["regenerate"] == {"roles": ["building", "debris", "car"], "plate": "clay", "feather_px": 8}


def test_an_unknown_role_is_refused_at_check_preset_time(tmp_path, capsys):
    path = write_preset(tmp_path / "typo.toml", regenerate={"roles": ["buildng", "street lamp"]})
    assert cli.main(["check-preset", str(path)]) == 1
    err = capsys.readouterr().err
    assert "regenerate.roles: unknown role 'buildng'; did you mean 'building'?" in err
    assert "regenerate.roles: unknown role 'street lamp': Rubble's roles are building, ground, debris" in err
    ok = write_preset(tmp_path / "artist.toml", regenerate={"roles": ["ground", "car_1"]})
    assert cli.main(["check-preset", str(ok)]) == 0, "Rubble's roles and well-formed artist roles load"


def test_bad_plate_and_strength_are_refused_saying_what_to_do(tmp_path):
    plates = tmp_path / "plates"
    plates.mkdir()
    for frame in range(25, 40):  # the default shot is frames 25-48
        (plates / f"street.{frame:04d}.png").write_bytes(b"")
    cases = [({"regenerate": {"plate": str(plates / "street.png")}}, "must be \"clay\" or an image sequence path"),
             ({"regenerate": {"plate": str(plates / "street.####.png")}},
              f"regenerate.plate: 9 of the shot's 24 frames (25-48) are missing, the first {plates / 'street.0040.png'}"),
             ({"regenerate": {"roles": "building"}}, "regenerate.roles: expected a list of role names"),
             ({"regenerate": {"roles": ["debris", "debris"]}}, "'debris' listed more than once"),
             ({"look": {"strength": 0.0}}, "look.strength: 0.0 × look.steps 20 leaves no denoising step"),
             ({"look": {"strength": 1.5}}, "look.strength: 1.5 is above the maximum 1.0")]
    for sections, says in cases:
        with pytest.raises(PresetError) as err:
            load_preset(write_preset(tmp_path / "bad.toml", **sections))
        assert says in str(err.value), str(err.value)
    relative = load_preset(write_preset(tmp_path / "rel.toml", regenerate={"plate": "plates/street.####.png"}))
    assert relative.regenerate.plate == "plates/street.####.png", "relative to the shot: the backend checks it"


def test_strength_and_regenerate_redo_generate_and_not_the_passes(tmp_path):
    from addon import pipeline

    def job(name, **sections):
        return pipeline.ShotJob(shot_dir=tmp_path / "shot", preset=load_preset(write_preset(tmp_path / name, **sections)),
                                owns_session=True)

    plain = job("plain.toml")
    for other in (job("v2v.toml", look={"strength": 0.5}), job("masked.toml", regenerate={"roles": ["building"]})):
        assert plain.pass_key() == other.pass_key()
        assert plain.generate_key() != other.generate_key()
