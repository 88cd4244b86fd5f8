"""Model families: the registry, and the second family (Wan2.1-VACE) end to end with its tiny
random-weight model through the real WanVACEPipeline: control and mask videos, windows of 4k+1
frames, cancel and resume, provenance naming every model."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from conftest import REPO, OutOfMemoryHook, make_shot, run_backend

WAN_MODEL = {"family": "wan-vace", "width": 64, "height": 48, "window": 5, "overlap": 1}
WAN_CONTROLS = [{"kind": "depth", "model": "Wan-AI/Wan2.1-VACE-1.3B-diffusers",
                 "revision": "ec4d2cb062b548996b179d493fdd05340de702a1"}]


def wan_shot(path, frames=7, look=None):
    return make_shot(path, frames=frames, size=(64, 48), model=WAN_MODEL, look=look, controls=WAN_CONTROLS)


def test_the_registry_lists_both_families_and_refuses_an_unknown_one_with_the_list(tmp_path):
    from inference import families
    from inference.protocol import BackendError

    assert families.names() == ["animatediff-controlnet", "wan-vace"]
    for name in families.names():  # each module has what the registry's docstring promises
        module = families.get(name)
        assert all(hasattr(module, a) for a in ("LATENT_CHANNELS", "VAE_SCALE_FACTOR", "run", "stale_windows"))
    with pytest.raises(BackendError, match="known families: animatediff-controlnet, wan-vace"):
        families.get("sora")
    shot = make_shot(tmp_path / "shot", model={"family": "sora"})
    run = run_backend("validate", str(shot))
    (error,) = run.of_type("error")
    assert "model family 'sora' is not known (known: animatediff-controlnet, wan-vace)" in error["message"]


def test_wan_windows_have_4k_plus_1_frames_and_start_on_latent_frames():
    from inference import long_shot, windows

    plan = long_shot.aligned_plan(7, 5, 1)
    assert plan == [windows.Window(0, 0, 5), windows.Window(1, 4, 7)]
    assert [long_shot.generated_length(w, 4) for w in plan] == [5, 5]  # the 3-frame last window is padded to 5
    plan = long_shot.aligned_plan(100, 81, 17)
    assert [(w.start, w.stop) for w in plan] == [(0, 81), (64, 100)]
    assert long_shot.generated_length(plan[1], 4) == 37
    assert long_shot.aligned_plan(3, 81, 17) == [windows.Window(0, 0, 3)]


def test_fetch_picks_the_shards_a_sharded_index_names():
    from inference import fetch, models
    from inference.families import wan_vace

    source = wan_vace.real_spec(type("M", (), {"base": "Wan-AI/x", "base_revision": "a" * 40})()).source("base")
    listing = ["transformer/config.json", "transformer/diffusion_pytorch_model.safetensors.index.json",
               *(f"transformer/diffusion_pytorch_model-0000{i}-of-00002.safetensors" for i in (1, 2)),
               "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "text_encoder/config.json",
               "text_encoder/model.safetensors.index.json",
               *(f"text_encoder/model-0000{i}-of-00005.safetensors" for i in range(1, 6)),
               "tokenizer/spiece.model", "tokenizer/tokenizer.json", "scheduler/scheduler_config.json",
               "model_index.json", "README.md", "assets/x.png"]
    chosen, unmet = fetch.select(source, listing, models.FP16)
    assert not unmet
    assert set(chosen) == set(listing) - {"tokenizer/spiece.model", "README.md", "assets/x.png"}


@pytest.fixture(scope="module")
def cancelled_then_resumed(tmp_path_factory, tiny_model):
    """A 7-frame Wan shot (windows 1-5 and 5-7): cancelled once window 0 is done, then run again."""
    shot = wan_shot(tmp_path_factory.mktemp("wan") / "shot", look={"steps": 8})
    command = [sys.executable, "-m", "inference", "generate", str(shot), "--tiny-model", str(tiny_model)]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["type"] == "progress" and events[-1]["stage"] == "window" and "done" in events[-1]["message"]:
            (shot / "cancel.request").touch()
    code = proc.wait(timeout=240)
    record = shot / "windows" / "000" / "record.json"
    kept_at = record.stat().st_mtime_ns
    rerun = run_backend("generate", str(shot), "--tiny-model", str(tiny_model), timeout=240)
    return shot, code, events, kept_at, rerun


def test_a_wan_shot_is_cancelled_keeping_its_finished_window_and_resumes(cancelled_then_resumed):
    shot, code, events, kept_at, rerun = cancelled_then_resumed
    assert code == 130
    (cancelled,) = [e for e in events if e["type"] == "cancelled"]
    assert cancelled["kept"] == ["windows/000"]
    steps = [e for e in events if e["type"] == "progress" and e["stage"] == "generate"]
    assert steps and steps[0]["total"] == 2 * 8  # two windows of 8 steps
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    (result,) = rerun.of_type("result")
    assert result["windows_skipped"] == [0] and result["windows_generated"] == [1]
    assert (shot / "windows" / "000" / "record.json").stat().st_mtime_ns == kept_at, "a finished window is not redone"
    assert sorted(p.name for p in (shot / "frames").glob("*.png")) == [f"{f:04d}.png" for f in range(1, 8)]
    assert Image.open(shot / "frames" / "0007.png").size == (64, 48)
    # The last window generated 5 frames (4k+1) for its 3 and kept 3; the control video and the mask went in.
    last = json.loads((shot / "windows" / "001" / "record.json").read_text())
    assert last["frames"] == [5, 7] and last["inputs"]["generated_frames"] == 5
    assert sorted(p.name for p in (shot / "windows" / "001").glob("*.png")) == ["0005.png", "0006.png", "0007.png"]
    assert last["inputs"]["mask"] == "ones" and last["inputs"]["controls"] == [{"kind": "depth", "weight": 1.0}]
    assert set(last["inputs"]["control_sha256"]) == {"5", "6", "7"}


def test_a_wan_shot_writes_provenance_with_its_family_and_every_model(cancelled_then_resumed, tiny_model):
    shot = cancelled_then_resumed[0]
    provenance = json.loads((shot / "provenance.json").read_text())
    assert provenance["model"]["family"] == "wan-vace" and provenance["smoke_test"] is True
    base = str(tiny_model.with_name(tiny_model.name + "-wan-vace") / "base")
    assert provenance["models"] == {"base": {"id": base, "revision": None, "commit": None}}
    (control,) = provenance["controls"]
    assert control["kind"] == "depth" and control["used"]["by"] == "base" and control["used"]["id"] == base
    assert [w["index"] for w in provenance["windows"]] == [0, 1]


def test_a_wan_shot_in_free_noise_mode_is_refused_saying_what_to_set(tmp_path):
    from inference import shot as shot_module
    from inference.families import wan_vace
    from inference.protocol import BackendError

    shot = make_shot(tmp_path / "shot", frames=2, size=(64, 48), model={**WAN_MODEL, "window": 6},
                     controls=WAN_CONTROLS, long_shot={"mode": "free_noise"})
    with pytest.raises(BackendError) as refused:  # run() checks this before it loads any weights
        wan_vace.run(shot_module.load(shot), None, "cpu", None, None)
    assert refused.value.code == "unsupported_setting"
    assert '[long_shot] mode must be "windows"' in refused.value.message
    assert "window must be 4k+1 frames (Wan's VAE packs 4 frames per latent): 5 or 9, not 6" in refused.value.message
    assert not (shot / "windows").exists()


def test_the_wan_pipeline_takes_the_memory_switches_on_its_vae(tiny_model):
    """WanVACEPipeline has no enable_vae_slicing/tiling of its own: the [memory] switches reach its VAE."""
    from inference import memory
    from inference.families import wan_vace

    spec = wan_vace.tiny_spec(tiny_model, None)
    pipe = wan_vace.load_pipeline(spec, "cpu", "float32", memory.Memory(vae_slicing=True, vae_tiling=True))
    assert type(pipe).__name__ == "WanVACEPipeline"
    assert pipe.vae.use_slicing and pipe.vae.use_tiling


def test_wan_windows_go_stale_when_their_inputs_change(cancelled_then_resumed, tmp_path):
    import dataclasses
    import shutil

    from inference import shot as shot_module
    from inference import windows
    from inference.families import wan_vace

    shot = shot_module.load(shutil.copytree(cancelled_then_resumed[0], tmp_path / "shot"))
    records = {w.index: windows.read_record(shot.directory, w) for w in wan_vace.long_shot.plan(shot)}
    assert wan_vace.stale_windows(shot, records) == []
    weaker = dataclasses.replace(shot.model, controls=(dataclasses.replace(shot.model.controls[0], weight=0.5),))
    assert wan_vace.stale_windows(dataclasses.replace(shot, model=weaker), records) == [0, 1]
    (shot.directory / "control" / "depth" / "0006.png").write_bytes(b"")  # only window 1 holds frame 6
    assert wan_vace.stale_windows(shot, records) == [1]


def test_the_tiny_wan_has_the_hub_layout_and_sharded_weights_load(tiny_model, tmp_path):
    """The file list fetch and doctor use matches what save_pretrained writes, whole or sharded (the
    real 14B's weights are shards behind a *.safetensors.index.json)."""
    import shutil

    import torch
    from diffusers import WanVACETransformer3DModel

    from inference import fetch, models
    from inference.families import wan_vace
    from inference.models import ModelSpec, Source

    tiny = wan_vace.tiny_spec(tiny_model, None).source("base").directory
    base = shutil.copytree(tiny, tmp_path / "base")
    transformer = WanVACETransformer3DModel.from_pretrained(base / "transformer")
    shutil.rmtree(base / "transformer")
    transformer.save_pretrained(base / "transformer", max_shard_size="60KB")
    shards = sorted(p.name for p in (base / "transformer").glob("diffusion_pytorch_model-*.safetensors"))
    assert len(shards) > 1
    source = Source("base", str(base), None, wan_vace.BASE_FILES, wan_vace.BASE_OPTIONAL)
    present = sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())
    selected, unmet = fetch.select(source, present, "full")
    assert not unmet and sorted(selected) == present
    assert {f"transformer/{s}" for s in shards} <= set(source.present_files())
    (base / "transformer" / shards[-1]).unlink()
    assert models.missing_files(ModelSpec(True, (source,))), "a missing shard is a missing file"
    transformer.save_pretrained(base / "transformer", max_shard_size="60KB")
    pipe = wan_vace.load_pipeline(ModelSpec(True, (source,)), "cpu", "float32")
    loaded = dict(pipe.transformer.named_parameters())
    assert all(torch.equal(p, loaded[name]) for name, p in transformer.named_parameters())


def test_a_wan_window_equals_the_plain_diffusers_call_prompt_cleaning_included(tiny_model, tmp_path):
    """A Wan window made by `generate` (prompt encoded once by diffusers, control maps as a tensor, the
    shot's latents) has the frames of a plain WanVACEPipeline call given the prompt strings (with
    mojibake and an HTML entity that diffusers' prompt_clean repairs) and the control PNGs."""
    import numpy as np
    import torch

    from inference import shot as shot_module
    from inference.families import wan_vace

    look = {"steps": 2, "prompt": "a cafÃ© collapsing, dust", "negative_prompt": "blurry &amp; low quality"}
    path = wan_shot(tmp_path / "shot", frames=5, look=look)
    run = run_backend("generate", str(path), "--tiny-model", str(tiny_model), timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    shot = shot_module.load(path)
    ours = np.stack([np.asarray(Image.open(path / "windows" / "000" / f"{f:04d}.png")) for f in range(1, 6)])

    pipe = wan_vace.load_pipeline(wan_vace.tiny_spec(tiny_model, None), "cpu", "float32")
    maps = [Image.open(shot.directory / "control" / "depth" / f"{f:04d}.png").convert("RGB") for f in range(1, 6)]
    wan_vace._set_flow_shift(pipe, wan_vace.flow_shift(shot))
    plain = pipe(prompt=look["prompt"], negative_prompt=look["negative_prompt"], video=maps,
                 conditioning_scale=1.0, height=48, width=64, num_frames=5, num_inference_steps=2,
                 guidance_scale=shot.look.guidance_scale, latents=torch.from_numpy(wan_vace.shot_latents(shot))[None],
                 output_type="np").frames[0]
    expected = np.round(np.clip(plain, 0, 1) * 255).astype(np.uint8)
    assert np.abs(ours.astype(int) - expected.astype(int)).max() <= 1  # float paths differ below one level


def test_a_wan_window_that_runs_out_of_memory_is_retried_once_with_offload(tmp_path, tiny_model):
    """As AnimateDiff's: the window is retried with model CPU offload, the retry is warned about and
    recorded, and the frames are those of a run that never ran out of memory."""
    import io
    import signal

    import numpy as np

    from inference import control, protocol
    from inference import shot as shot_module
    from inference.cancel import CancelFlag
    from inference.families import wan_vace

    spec = wan_vace.tiny_spec(tiny_model, None)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stream, protocol._stream = protocol._stream, io.StringIO()
    try:
        for name, failures in (("clean", 0), ("retried", 1)):
            shot = shot_module.load(wan_shot(tmp_path / name, frames=5, look={"steps": 2}))
            control.derive(shot, shot.frames)
            pipe = wan_vace.load_pipeline(spec, "cpu", "float32")
            hook = OutOfMemoryHook(pipe, failures)
            wan_vace.run(shot, spec, "cpu", None, CancelFlag(shot.directory), pipe=pipe)
        events = [json.loads(line) for line in protocol._stream.getvalue().splitlines()]
    finally:
        protocol._stream = stream
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert hook.calls == 1 + 2 * 2, "the failed call, then 2 steps x (conditional, unconditional)"
    assert [e["code"] for e in events if e["type"] == "warning"] == ["out_of_memory_retry"]
    record = json.loads((tmp_path / "retried" / "windows" / "000" / "record.json").read_text())
    assert record["retried_with_offload"] is True and record["offload"] == "model"
    pngs = {name: np.stack([np.asarray(Image.open(p)) for p in sorted((tmp_path / name / "windows" / "000").glob("*.png"))])
            for name in ("clean", "retried")}
    assert pngs["clean"].shape[0] == 5 and np.array_equal(pngs["clean"], pngs["retried"]), "offload changes no pixel"
