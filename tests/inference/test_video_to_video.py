"""Video-to-video from the clay ([look] strength) and masked regeneration over a plate ([regenerate]),
with the tiny model: the real diffusers pipelines in process (one loaded pipeline for the module), one
real `generate` subprocess for the refusals. 64x48 generation = the shot's size, so nothing is resized."""

import dataclasses
import io
import json
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_shot, run_backend

SIZE = {"size": (64, 48), "model": {"width": 64, "height": 48}}
STEPS = 4  # strength 0.5 -> the last 2 of 4 DDIM steps
FRAMES = 3  # windows of 2 sharing 1 -> windows (1-2), (2-3)


def frames(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])


def set_preset(shot: Path, section: str, **values) -> None:
    path = shot / "shot.json"
    data = json.loads(path.read_text())
    data["preset"][section] = {**data["preset"].get(section, {}), **values}
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def in_process():
    """Events into a buffer; pytest's signal handlers back afterwards (CancelFlag installs its own)."""
    from inference import protocol

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stream, protocol._stream = protocol._stream, io.StringIO()
    yield
    protocol._stream = stream
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory, tiny_model, in_process):
    from inference import models
    from inference import shot as shot_module

    controls = shot_module.load(make_shot(tmp_path_factory.mktemp("probe"), frames=1, **SIZE)).model.controls
    return models.load_pipeline(models.tiny_spec(tiny_model, controls), "cpu")


def generate(shot_dir: Path, tiny_model: Path, pipe) -> dict:
    """What `generate` does, in process: control maps, windows, blend, delivery (upscale stage)."""
    from inference import control, models
    from inference import shot as shot_module
    from inference.cancel import CancelFlag
    from inference.families import animatediff_controlnet

    shot = shot_module.load(shot_dir)
    control.derive(shot, shot.frames)
    done = animatediff_controlnet.run(shot, models.tiny_spec(tiny_model, shot.model.controls), "cpu", None,
                                      CancelFlag(shot_dir), pipe=pipe)
    deliver(shot_module.load(shot_dir))
    return done


def deliver(shot) -> None:
    """Blend the windows, then deliver the frames at the shot's size (where [regenerate] composites)."""
    from inference import blend, upscale

    blend.run(shot)
    upscale.run(shot)


@pytest.fixture(scope="module")
def shots(tmp_path_factory, tiny_model, pipe):
    """The same 3-frame shot as text-to-video without the key and with strength = 1.0 (2 steps), at
    strength 0.5 (2 of 4 steps), and at 0.5 in free_noise mode (1 of 2 steps, two context windows). Kept small: CI budget."""
    root = tmp_path_factory.mktemp("v2v")
    made = {}
    for name, frames_, look, long_shot in (
            ("plain", FRAMES, {"steps": 2}, None), ("one", FRAMES, {"steps": 2, "strength": 1.0}, None),
            ("half", FRAMES, {"steps": STEPS, "strength": 0.5}, None),
            ("half_free_noise", FRAMES, {"steps": 2, "strength": 0.5},
             {"mode": "free_noise", "context_length": 2, "context_stride": 1})):
        shot = make_shot(root / name, frames=frames_, look=look, long_shot=long_shot, **SIZE)
        made[name] = (shot, generate(shot, tiny_model, pipe))
    return made


def test_strength_one_is_text_to_video_bit_for_bit(shots):
    plain, one = shots["plain"][0], shots["one"][0]
    assert np.array_equal(frames(one / "frames"), frames(plain / "frames"))
    for index in range(FRAMES - 1):
        a = json.loads((plain / "windows" / f"{index:03d}" / "record.json").read_text())
        b = json.loads((one / "windows" / f"{index:03d}" / "record.json").read_text())
        assert a["inputs_sha256"] == b["inputs_sha256"], "strength 1.0 leaves the window records as they were"
        assert "strength" not in b["inputs"]["look"] and "video_to_video" not in b["inputs"]


def test_strength_half_runs_the_video_to_video_pipeline_on_the_noised_clay(shots, tiny_model, pipe):
    """Window 1 equals diffusers' AnimateDiffVideoToVideoControlNetPipeline given the clay encoded by the VAE
    (posterior mean × scaling factor) and noised with DDIM's add_noise at the first kept timestep, with the
    window's slice of the shot's noise."""
    import torch
    from diffusers import AnimateDiffVideoToVideoControlNetPipeline

    from inference import noise_warp
    from inference import shot as shot_module
    from inference.families import animatediff_controlnet

    shot_dir = shots["half"][0]
    assert not np.array_equal(frames(shot_dir / "frames"), frames(shots["plain"][0] / "frames"))
    shot = shot_module.load(shot_dir)
    record = json.loads((shot_dir / "windows" / "001" / "record.json").read_text())
    assert record["inputs"]["look"]["strength"] == 0.5
    assert sorted(record["inputs"]["video_to_video"]["clay_sha256"]) == ["2", "3"]
    write_provenance(shot, tiny_model)
    recorded = json.loads((shot_dir / "provenance.json").read_text())
    assert recorded["video_to_video"]["strength"] == 0.5 and recorded["video_to_video"]["denoising_steps"] == 2
    assert recorded["look"]["strength"] == 0.5 and recorded["regenerate"] is None

    v2v = AnimateDiffVideoToVideoControlNetPipeline(**{k: v for k, v in pipe.components.items()})
    v2v.set_progress_bar_config(disable=True)
    clay = np.stack([np.asarray(Image.open(shot_dir / "control" / "clay" / f"{f:04d}.png").convert("RGB"),
                                dtype=np.float32) / 255.0 for f in (2, 3)])
    with torch.no_grad():
        x0 = v2v.vae.encode(torch.from_numpy(clay).permute(0, 3, 1, 2) * 2 - 1).latent_dist.mean
    x0 = (x0 * v2v.vae.config.scaling_factor).permute(1, 0, 2, 3)[None]
    noise = torch.from_numpy(noise_warp.shot_latents(shot))[None][:, :, 1:3]
    v2v.scheduler.set_timesteps(STEPS)
    first_kept = v2v.scheduler.timesteps[STEPS // 2]  # int(4 × 0.5) = 2 steps: the last two
    start = v2v.scheduler.add_noise(x0, noise, first_kept[None])
    video = v2v(
        prompt=shot.look.prompt, negative_prompt=shot.look.negative_prompt, width=64, height=48,
        num_inference_steps=STEPS, strength=0.5, guidance_scale=shot.look.guidance_scale, latents=start,
        **animatediff_controlnet.control_arguments(shot, [2, 3]), decode_chunk_size=8, output_type="np",
    ).frames[0]
    expected = np.round(np.clip(video, 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(frames(shot_dir / "windows" / "001"), expected)


def test_free_noise_mode_runs_video_to_video_too(shots, pipe):
    shot_dir, done = shots["half_free_noise"]
    assert done["generated"] == [0]
    assert pipe.free_noise_enabled, "the loaded pipeline still says how its shared motion modules are set up"
    record = json.loads((shot_dir / "windows" / "000" / "record.json").read_text())
    assert record["inputs"]["long_shot"]["mode"] == "free_noise" and record["inputs"]["look"]["strength"] == 0.5
    assert frames(shot_dir / "frames").std() > 1.0


def test_a_strength_or_clay_change_makes_the_windows_stale(shots):
    from inference import shot as shot_module
    from inference import windows
    from inference.families import animatediff_controlnet

    for name, other in (("half", 0.7), ("half", 1.0), ("one", 0.5)):
        shot = shot_module.load(shots[name][0])
        records = {i: windows.read_record(shot.directory, windows.Window(i, i, i + 2)) for i in range(FRAMES - 1)}
        assert animatediff_controlnet.stale_windows(shot, records) == []
        changed = dataclasses.replace(shot, look=dataclasses.replace(shot.look, strength=other))
        assert animatediff_controlnet.stale_windows(changed, records) == [0, 1], (name, other)
    shot = shot_module.load(shots["half"][0])
    records = {i: windows.read_record(shot.directory, windows.Window(i, i, i + 2)) for i in range(FRAMES - 1)}
    clay = shot.directory / "control" / "clay" / "0003.png"
    kept = clay.read_bytes()
    try:
        Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(clay)
        assert animatediff_controlnet.stale_windows(shot, records) == [1], "the window starting from frame 3's clay"
    finally:
        clay.write_bytes(kept)


# -- masked regeneration ----------------------------------------------------------------------------------------

PLATE = (255, 0, 255)  # magenta: far from anything the tiny model draws in the green channel


def plate_sequence(folder: Path, frames_: range, size=(64, 48)) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for f in frames_:
        Image.fromarray(np.full((size[1], size[0], 3), PLATE, np.uint8)).save(folder / f"plate.{f:04d}.png")
    return str(folder / "plate.####.png")


def write_provenance(shot, tiny_model: Path) -> None:
    from inference import contact_sheet, models, provenance, upscale

    contact_sheet.write(shot, True)
    provenance.write(shot, models.describe(models.tiny_spec(tiny_model, shot.model.controls)),
                     **upscale.provenance(shot, None))


def test_outside_the_feathered_mask_the_frames_are_the_plate(shots, tmp_path, tiny_model):
    from inference import provenance, regenerate
    from inference import shot as shot_module

    shot_dir = shots["plain"][0]
    set_preset(shot_dir, "regenerate", roles=["building"], plate=plate_sequence(tmp_path, range(1, FRAMES + 1)), feather_px=2)
    try:
        shot = shot_module.load(shot_dir)
        deliver(shot)
        write_provenance(shot, tiny_model)
        recorded = json.loads((shot_dir / "provenance.json").read_text())["regenerate"]
        assert recorded["roles"] == ["building"] and recorded["feather_px"] == 2 and len(recorded["plate_sha256"]) == 64
        assert provenance.describes_current_frames(shot)
        other = dataclasses.replace(shot, regenerate=dataclasses.replace(shot.regenerate, feather_px=3))
        assert not provenance.describes_current_frames(other), "another [regenerate] composites again"
        out = frames(shot_dir / "frames")
        unmasked = frames(shot_dir / "regenerate" / "unmasked")
        alpha = np.stack([np.asarray(Image.open(p)) for p in sorted((shot_dir / "regenerate" / "mask").glob("*.png"))])
    finally:
        set_preset(shot_dir, "regenerate", roles=[])
        deliver(shot_module.load(shot_dir))
    plate = np.broadcast_to(np.uint8(PLATE), out.shape)
    outside, inside = alpha == 0, alpha == 255
    edge = (alpha > 0) & (alpha < 255)
    assert outside.any() and inside.any() and edge.any()
    assert np.array_equal(out[outside], plate[outside]), "outside the feathered mask: the plate, exactly"
    assert np.array_equal(out[inside], unmasked[inside]), "deep inside: the generated pixels, exactly"
    assert np.array_equal(unmasked, frames(shots["one"][0] / "frames")), "the unmasked frames are kept as generated"
    # The feathered edge lies strictly between plate and generated where they differ by more than the
    # rounding can hide (the smallest weight is 1/25 at feather_px = 2).
    gen, comp, pl = unmasked[edge].astype(int), out[edge].astype(int), plate[edge].astype(int)
    wide = np.abs(gen - pl) > 2 * 25
    assert wide.sum() > 10
    assert ((comp[wide] > np.minimum(gen, pl)[wide]) & (comp[wide] < np.maximum(gen, pl)[wide])).all()
    # The mask follows the building's object index: the box in the middle of the synthetic shot.
    assert (alpha[:, 24, 24] == 255).all() and (alpha[:, 2, 2] == 0).all()
    assert regenerate.feather(np.ones((3, 3), bool), 2).min() == 1.0


def test_a_bad_plate_or_role_is_refused_before_any_weights_load(tmp_path, tiny_model):
    shot = make_shot(tmp_path / "shot", frames=3, **SIZE)
    set_preset(shot, "regenerate", roles=["building"], plate=plate_sequence(tmp_path / "short", range(1, 3)))
    run = run_backend("generate", str(shot), "--tiny-model", str(tiny_model))
    (error,) = run.of_type("error")
    assert run.returncode != 0 and error["code"] == "bad_plate"
    assert "lacks 1 of the shot's 3 frames" in error["message"] and "plate.0003.png" in error["message"]
    assert "for every frame" in error["hint"]
    assert not (shot / "windows").exists(), "refused before any window ran"

    from inference import regenerate
    from inference import shot as shot_module
    from inference.protocol import BackendError

    set_preset(shot, "regenerate", plate=plate_sequence(tmp_path / "big", range(1, 4), size=(32, 24)))
    with pytest.raises(BackendError, match=r"is 32x24, but the shot's frames are 64x48") as err:
        regenerate.check(shot_module.load(shot))
    assert "resolution" in err.value.hint
    set_preset(shot, "regenerate", plate="clay", roles=["buildings"])
    with pytest.raises(BackendError, match=r"roles \['buildings'\] are not roles of this shot \(its roles: building, ground\)"):
        regenerate.check(shot_module.load(shot))


def test_bad_strength_and_regenerate_tables_are_refused_when_the_shot_loads(tmp_path):
    from inference import shot as shot_module
    from inference.protocol import BackendError

    for section, values, words in (("look", {"strength": 0.0}, "look strength 0.0 must be above 0"),
                                   ("look", {"strength": 1.5}, "look strength 1.5"),
                                   ("regenerate", {"plate": "plate.png"}, "one run of #"),
                                   ("regenerate", {"roles": "building"}, "must be a list of role names"),
                                   ("regenerate", {"feather": 3}, "unknown keys ['feather']")):
        shot = make_shot(tmp_path / section / str(len(words)), frames=1, **SIZE)
        set_preset(shot, section, **values)
        with pytest.raises(BackendError, match="malformed") as err:
            shot_module.load(shot)
        assert words in err.value.message, err.value.message


def test_too_low_a_strength_for_the_steps_is_refused(tmp_path):
    from inference import shot as shot_module
    from inference import video_to_video
    from inference.protocol import BackendError

    shot = make_shot(tmp_path / "shot", frames=1, look={"steps": 4, "strength": 0.2}, **SIZE)
    with pytest.raises(BackendError, match=r"leaves no denoising step") as err:
        video_to_video.check(shot_module.load(shot))
    assert "at least 0.25" in err.value.hint
