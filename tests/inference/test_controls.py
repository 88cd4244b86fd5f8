"""Several ControlNets at once: detector maps, the control contact sheet, and our pipeline call
against a plain diffusers call with the same MultiControlNetModel (tiny model, real diffusers)."""

import colorsys
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, layout, make_shot, run_backend
from inference import control, control_sheet, detectors, files
from inference import tiny_model as tiny
from inference import shot as shot_module

DEPTH = {"kind": "depth", "model": "lllyasviel/control_v11f1p_sd15_depth", "weight": 0.8}
# Normals only for the first half of the steps, so the per-control start/end lists are exercised.
NORMAL = {"kind": "normal", "model": "lllyasviel/control_v11p_sd15_normalbae", "weight": 1.3,
          "guidance_start": 0.0, "guidance_end": 0.5}
CANNY = {"kind": "canny", "model": "lllyasviel/control_v11p_sd15_canny"}
LINEART = {"kind": "lineart", "model": "lllyasviel/control_v11p_sd15_lineart"}


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def hue_from_red(r: float, g: float, b: float) -> float:
    """Degrees between a colour's hue and pure red's (0), either way round the circle."""
    hue = colorsys.rgb_to_hls(r, g, b)[0] * 360
    return min(hue, 360 - hue)


# --- detectors -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def canny_shot(tmp_path_factory):
    shot_dir = make_shot(tmp_path_factory.mktemp("canny") / "shot", frames=4, controls=[DEPTH, CANNY])
    run = run_backend("control", str(shot_dir))
    assert run.returncode == 0, run.stderr
    return shot_dir


def test_canny_maps_are_edges_of_the_clay_render(canny_shot):
    shot = shot_module.load(canny_shot)
    edges = png(control.map_path(shot, "canny", 1))
    assert edges.shape == (48, 64) and set(np.unique(edges)) == {0, 255}
    at = layout(64, 48)
    # In the clay render the box's front and the far wall have one shade, its side another, the sky
    # a third: edges run down the front/side boundary and along the sky line, none inside the front.
    side = at.box_side_cols.start
    rows = slice(at.box_rows.start + 2, at.box_rows.stop - 2)
    assert edges[rows, side - 1 : side + 1].any(axis=1).all()
    assert edges[at.box_rows.start - 1 : at.box_rows.start + 1, 2:-2].any(axis=0).all()
    assert not edges[rows, at.box_front_cols.start + 2 : side - 2].any()


def test_detector_maps_are_the_same_in_a_chunk_and_a_rerun(canny_shot, tmp_path):
    chunk = tmp_path / "chunk"
    shutil.copytree(canny_shot, chunk, ignore=shutil.ignore_patterns("control"))
    shot, part = shot_module.load(canny_shot), shot_module.load(chunk)
    control.derive(part, [3, 4])
    for frame in (3, 4):
        assert np.array_equal(png(control.map_path(shot, "canny", frame)), png(control.map_path(part, "canny", frame)))
    assert not control.map_path(part, "canny", 1).exists()


def test_lineart_without_its_weights_is_refused_before_any_work(tmp_path):
    shot_dir = make_shot(tmp_path / "shot", frames=2, controls=[DEPTH, LINEART])
    run = run_backend("control", str(shot_dir), env={"HF_HUB_CACHE": str(tmp_path / "empty-hub"), "HF_HUB_OFFLINE": "1"})
    assert run.returncode == 1
    (error,) = run.of_type("error")
    assert error["code"] == "missing_weights"
    assert "lllyasviel/Annotators@main: sk_model.pth, sk_model2.pth" in error["message"]
    assert "hf download lllyasviel/Annotators sk_model.pth sk_model2.pth" in error["hint"]
    assert not (shot_dir / "control").exists(), "nothing derived before the refusal"
    assert not (tmp_path / "empty-hub").exists() or not any((tmp_path / "empty-hub").iterdir()), "never downloads"


def test_lineart_loads_from_the_cache_and_is_chunk_identical(tmp_path, monkeypatch):
    """LineartDetector with random weights saved in the cache layout: the map is made from the cache
    (no network here), the same for a frame whether derived in the whole shot or in a chunk."""
    import torch
    from huggingface_hub import constants

    repo, _, filenames = detectors.LINEART_WEIGHTS
    generator = detectors._aux("lineart").Generator
    commit = "0" * 40
    root = tmp_path / "hub" / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    (root / "snapshots" / commit).mkdir(parents=True)
    for seed, name in enumerate(filenames):
        torch.manual_seed(seed)
        torch.save(generator(3, 1, 3).state_dict(), root / "snapshots" / commit / name)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    whole = shot_module.load(make_shot(tmp_path / "whole", frames=3, controls=[LINEART]))
    chunk = shot_module.load(make_shot(tmp_path / "chunk", frames=3, controls=[LINEART]))
    control.derive(whole, whole.frames)
    control.derive(chunk, [2, 3])
    a, b = (png(control.map_path(s, "lineart", 2)) for s in (whole, chunk))
    assert a.shape == (48, 64) and a.dtype == np.uint8 and a.std() > 0
    assert np.array_equal(a, b)


# --- the control contact sheet -------------------------------------------------------------------

def test_control_sheet_shows_each_map_in_its_panel(canny_shot):
    shot = shot_module.load(canny_shot)
    sheet = png(control_sheet.path(shot))
    at = control_sheet.layout(shot)
    assert at.columns == ("clay", "disparity", "normals", "flow", "masks", "canny")
    assert sheet.shape[:2] == (at.size[1], at.size[0]) and at.frames == (1, 2, 3, 4)
    box = layout(64, 48)
    scale = at.cell[0] / 64

    def pixel(column, row, y, x):
        left, top = at.origin(at.columns.index(column), row)
        return sheet[top + int((y + 0.5) * scale), left + int((x + 0.5) * scale)]

    y_box = (box.box_rows.start + box.box_rows.stop) // 2
    x_front = (box.box_front_cols.start + box.box_front_cols.stop) // 2
    # Flow: the box moves 1 px right (Vector Z = -1), the rest is still. Middlebury coding: still is
    # white, rightward is red (where the wheel starts and ends), fully saturated at the longest flow.
    r, g, b = pixel("flow", 1, y_box, x_front) / 255.0
    assert hue_from_red(r, g, b) < 20 and r > 0.95 and g < 0.05, (r, g, b)
    assert (pixel("flow", 1, 2, 2) == 255).all()
    # Masks: the box is the building, the floor the ground, the sky none.
    assert tuple(pixel("masks", 0, y_box, x_front)) == control_sheet.ROLE_COLOURS["building"]
    assert tuple(pixel("masks", 0, 46, 10)) == control_sheet.ROLE_COLOURS["ground"]
    assert tuple(pixel("masks", 0, 2, 2)) == (0, 0, 0)
    # Disparity: the near box is brighter than the far wall; normals: the box front faces the camera.
    assert pixel("disparity", 0, y_box, x_front)[0] > pixel("disparity", 0, y_box, 2)[0]
    assert abs(int(pixel("normals", 0, y_box, x_front)[2]) - 255) <= 2
    assert pixel("clay", 0, y_box, x_front).sum() > 0


def test_flow_colour_wheel_directions():
    """The four directions land where the Middlebury wheel puts them (x right, y down)."""
    flow = np.array([[[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [0.0, 0.0]]], np.float32)
    hues = [colorsys.rgb_to_hls(*(c / 255.0))[0] * 360 for c in control_sheet.flow_colours(flow, 1.0)[0, :4]]
    right, left, down, up = hues
    assert min(right, 360 - right) < 20 and 180 <= left <= 200 and 45 <= down <= 60 and 250 <= up <= 270, hues
    assert (control_sheet.flow_colours(flow, 1.0)[0, 4] == 255).all()


# --- two ControlNets: our call against a plain diffusers call --------------------------------------

@pytest.fixture(scope="module")
def two_controls(tmp_path_factory, tiny_model):
    shot_dir = make_shot(tmp_path_factory.mktemp("multi") / "shot", frames=2, controls=[DEPTH, NORMAL])
    run = run_backend("generate", str(shot_dir), "--weights", "tiny", "--tiny-model", str(tiny_model), "--device", "cpu")
    assert run.returncode == 0, run.stderr
    return shot_dir


def test_two_controls_give_the_frames_of_a_plain_diffusers_call(two_controls, tiny_model):
    import torch
    from diffusers import (AnimateDiffControlNetPipeline, AutoencoderKL, ControlNetModel, DDIMScheduler,
                           MotionAdapter, MultiControlNetModel, UNet2DConditionModel, UNetMotionModel)
    from transformers import CLIPTextModel, CLIPTokenizer

    shot = shot_module.load(two_controls)
    base = tiny_model / tiny.BASE
    pipe = AnimateDiffControlNetPipeline(
        vae=AutoencoderKL.from_pretrained(base, subfolder="vae"),
        text_encoder=CLIPTextModel.from_pretrained(base, subfolder="text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(base, subfolder="tokenizer"),
        unet=UNetMotionModel.from_unet2d(UNet2DConditionModel.from_pretrained(base, subfolder="unet"),
                                         MotionAdapter.from_pretrained(tiny_model / tiny.MOTION_ADAPTER)),
        motion_adapter=None,
        controlnet=MultiControlNetModel([ControlNetModel.from_pretrained(tiny_model / tiny.controlnet_folder(kind))
                                         for kind in ("depth", "normal")]),
        scheduler=DDIMScheduler.from_pretrained(base, subfolder="scheduler"),
    )
    pipe.set_progress_bar_config(disable=True)
    size = (shot.model.width, shot.model.height)

    def depth(frame):
        levels = png(two_controls / "control" / "depth" / f"{frame:04d}.png").astype(np.float32) / 65535.0
        grey = np.asarray(Image.fromarray(levels).resize(size, Image.Resampling.BILINEAR))
        return np.repeat(grey[..., None], 3, axis=-1)

    def normal(frame):
        image = Image.open(two_controls / "control" / "normal" / f"{frame:04d}.png").resize(size, Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.float32) / 255.0

    noise = torch.randn((1, 4, 2, shot.model.height // 8, shot.model.width // 8),
                        generator=torch.Generator("cpu").manual_seed(shot.seed))
    plain = pipe(
        prompt=shot.look.prompt, negative_prompt=shot.look.negative_prompt, num_frames=2,
        width=shot.model.width, height=shot.model.height, num_inference_steps=shot.look.steps,
        guidance_scale=shot.look.guidance_scale, latents=noise, output_type="np",
        conditioning_frames=[[depth(1), depth(2)], [normal(1), normal(2)]],
        controlnet_conditioning_scale=[0.8, 1.3], control_guidance_start=[0.0, 0.0], control_guidance_end=[1.0, 0.5],
    ).frames[0]
    expected = np.round(np.clip(plain, 0.0, 1.0) * 255.0).astype(np.uint8)
    ours = np.stack([png(two_controls / "windows" / "000" / f"{f:04d}.png") for f in (1, 2)])
    assert np.array_equal(ours, expected), f"largest difference {np.abs(ours.astype(int) - expected).max()}"

    # Each control matters: the normal ControlNet's half of the steps changes the frames.
    without_normal = pipe(
        prompt=shot.look.prompt, negative_prompt=shot.look.negative_prompt, num_frames=2,
        width=shot.model.width, height=shot.model.height, num_inference_steps=shot.look.steps,
        guidance_scale=shot.look.guidance_scale, latents=noise, output_type="np",
        conditioning_frames=[[depth(1), depth(2)], [normal(1), normal(2)]],
        controlnet_conditioning_scale=[0.8, 0.0], control_guidance_start=[0.0, 0.0], control_guidance_end=[1.0, 0.5],
    ).frames[0]
    assert np.abs(without_normal - plain).max() > 1e-3


def test_provenance_records_each_control_with_its_weights(two_controls, tiny_model):
    record = json.loads((two_controls / "provenance.json").read_text())["controls"]
    assert [(c["kind"], c["weight"], c["guidance_start"], c["guidance_end"]) for c in record] == [
        ("depth", 0.8, 0.0, 1.0), ("normal", 1.3, 0.0, 0.5)]
    for entry in record:
        folder = tiny_model / tiny.controlnet_folder(entry["kind"])
        assert entry["used"]["tiny_model_sha256"] == files.sha256_tree(folder)
        assert entry["model"].startswith("lllyasviel/") and entry["maps"] == f"control/{entry['kind']}/"


def test_a_shot_from_a_v1_preset_reads_as_one_depth_control(tmp_path):
    shot_dir = make_shot(tmp_path / "shot", frames=1)
    data = json.loads((shot_dir / "shot.json").read_text())
    del data["preset"]["controls"]
    data["preset"]["model"].update(controlnet="someone/depth", controlnet_revision="abc")
    data["preset"]["look"]["controlnet_scale"] = 0.6
    (shot_dir / "shot.json").write_text(json.dumps(data))
    assert shot_module.load(shot_dir).model.controls == (shot_module.Control("depth", "someone/depth", "abc", 0.6, 0.0, 1.0),)


def test_a_control_weight_is_part_of_each_window_hash(tmp_path):
    from inference import windows
    from inference.families import animatediff_controlnet

    def window_hash(controls):
        shot = shot_module.load(make_shot(tmp_path / str(len(list(tmp_path.iterdir()))), frames=2, controls=controls))
        inputs = animatediff_controlnet.window_inputs(shot, {}, {}, animatediff_controlnet.control_hashes(shot),
                                                      windows.Window(0, 0, 2))
        return files.sha256_json(inputs)

    assert window_hash([DEPTH, NORMAL]) != window_hash([DEPTH, {**NORMAL, "weight": 1.0}])
    assert window_hash([DEPTH, NORMAL]) != window_hash([NORMAL, DEPTH]), "the order pairs maps with ControlNets"
    assert window_hash([DEPTH, NORMAL]) == window_hash([DEPTH, NORMAL])


def test_one_control_in_a_multi_controlnet_equals_the_plain_controlnet(tiny_model):
    """models.controlnets() always builds a MultiControlNetModel; with one net it gives what that net gives."""
    import torch
    from diffusers import ControlNetModel, MultiControlNetModel

    net = ControlNetModel.from_pretrained(tiny_model / tiny.controlnet_folder("depth"))
    sample = torch.randn((2, 4, 10, 16), generator=torch.Generator("cpu").manual_seed(0))
    cond = torch.rand((2, 3, 80, 128), generator=torch.Generator("cpu").manual_seed(1))
    text = torch.randn((2, 77, 8), generator=torch.Generator("cpu").manual_seed(2))
    with torch.no_grad():
        down, mid = net(sample, 10, text, cond, conditioning_scale=0.7, return_dict=False)
        multi_down, multi_mid = MultiControlNetModel([net])(sample, 10, text, [cond], [0.7], return_dict=False)
    assert all(torch.equal(a, b) for a, b in zip(down, multi_down)) and torch.equal(mid, multi_mid)


def test_doctor_lists_every_controls_weights_and_the_detectors(tmp_path):
    shot_dir = make_shot(tmp_path / "shot", frames=1, controls=[NORMAL, LINEART])
    run = run_backend("doctor", "--shot", str(shot_dir), "--tiny-model", str(tmp_path / "none"),
                      env={"HF_HOME": str(tmp_path / "hf")})
    assert run.returncode == 0, run.stderr
    (report,) = run.of_type("result")
    assert [m for m in report["real_weights"]["models"] if "control" in m] == [
        "lllyasviel/control_v11p_sd15_normalbae@main", "lllyasviel/control_v11p_sd15_lineart@main"]
    assert any(m.startswith("lllyasviel/control_v11p_sd15_lineart@main: ") for m in report["real_weights"]["missing"])
    assert report["detector_weights"]["missing"] == ["lllyasviel/Annotators@main: sk_model.pth",
                                                     "lllyasviel/Annotators@main: sk_model2.pth"]
    assert "detectors    MISSING" in run.stderr


def test_validate_checks_every_controls_weights_without_torch(tmp_path):
    shot_dir = make_shot(tmp_path / "shot", frames=1, controls=[NORMAL, LINEART])
    code = ("import sys; from inference.__main__ import main; "
            f"assert main(['validate', {str(shot_dir)!r}, '--check-weights']) == 0; "
            "assert 'torch' not in sys.modules, 'heavy import'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    (result,) = [e for e in events if e.get("event", e.get("type")) == "result"]
    assert result["real_weights_present"] is False
    assert result["detector_weights_missing"] == ["lllyasviel/Annotators@main: sk_model.pth",
                                                  "lllyasviel/Annotators@main: sk_model2.pth"]


def test_a_tiny_model_from_before_the_control_kinds_is_rebuilt(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / tiny.MARKER).write_text(json.dumps({"what": "random weights — smoke test", "seed": 0}))
    assert not tiny.is_tiny_model(old)
    (old / tiny.MARKER).write_text(json.dumps({"seed": 0, "controlnets": list(shot_module.CONTROL_KINDS)}))
    assert not tiny.is_tiny_model(old)  # from before the draft tier's adapter
    (old / tiny.MARKER).write_text(json.dumps({"seed": 0, "controlnets": list(shot_module.CONTROL_KINDS),
                                               "adapters": [tiny.MOTION_ADAPTER, tiny.DRAFT_MOTION_ADAPTER]}))
    assert tiny.is_tiny_model(old)
