"""Real-weight loading without a download: the tiny model laid out as a Hugging Face cache
(fp16-variant files, copies instead of symlinks) or as local directories, loaded as "pretrained"."""

import hashlib
import json
import os
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, make_shot, run_backend
from inference import file_hashes, models, tiny_model
from inference import shot as shot_module

KINDS = ("depth", "normal")  # the default preset's [[controls]]
ROLES = {"base": tiny_model.BASE, "motion_adapter": tiny_model.MOTION_ADAPTER,
         **{models.controlnet_role(k): tiny_model.controlnet_folder(k) for k in KINDS}}
IDS = {"base": "rubble-test/base", "motion_adapter": "rubble-test/adapter",
       **{models.controlnet_role(k): f"rubble-test/controlnet-{k}" for k in KINDS}}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fake_hub_cache(tiny: Path, cache: Path, fp16: bool, symlinks: bool) -> dict[str, Path]:
    """The tiny model in the Hugging Face cache layout (models--org--name/refs/main, snapshots/<commit>/…);
    fp16: weights only as diffusers' fp16 variant (cast to fp16, named *.fp16.safetensors);
    symlinks: snapshot files link to blobs named by their sha256, as huggingface_hub writes them,
    else plain copies (a cache on Windows, or a copied one). Returns each role's snapshot directory."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    snapshots = {}
    for role, repo in IDS.items():
        root = cache / f"models--{repo.replace('/', '--')}"
        commit = hashlib.sha1(repo.encode()).hexdigest()
        (root / "refs").mkdir(parents=True)
        (root / "refs" / "main").write_text(commit)
        snapshot = snapshots[role] = root / "snapshots" / commit
        source = tiny / ROLES[role]
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            name = path.relative_to(source)
            target = snapshot / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if fp16 and path.suffix == ".safetensors":
                target = target.with_name(f"{path.stem}.fp16.safetensors")
                with safe_open(str(path), "pt") as f:
                    tensors = {k: f.get_tensor(k).half() for k in f.keys()}
                    metadata = f.metadata()
                save_file(tensors, str(target), metadata=metadata)
            else:
                shutil.copyfile(path, target)
            if symlinks:
                blob = root / "blobs" / sha256(target)
                blob.parent.mkdir(exist_ok=True)
                os.replace(target, blob)
                target.symlink_to(os.path.relpath(blob, target.parent))
    return snapshots


def preset_parts(locations: dict[str, str]) -> tuple[dict, list[dict]]:
    """[model] overrides and [[controls]] that put each role (ROLES' keys) at a location (id or path)."""
    model = {role: where for role, where in locations.items() if not role.startswith("controlnet:")}
    model.update({f"{role}_revision": "main" for role in list(model)})
    controls = [{"kind": k, "model": locations[models.controlnet_role(k)], "revision": "main"} for k in KINDS]
    return model, controls


def settings(locations: dict[str, str] | None = None, **model) -> shot_module.ModelSettings:
    preset = tomllib.loads((REPO / "presets" / "default.toml").read_text(encoding="utf-8"))
    overrides, controls = preset_parts(locations) if locations else ({}, preset["controls"])
    return shot_module.model_settings({**preset["model"], **overrides, **model}, controls)


def hub_settings() -> shot_module.ModelSettings:
    return settings(IDS)


def local_settings(tiny: Path) -> shot_module.ModelSettings:
    return settings({role: str(tiny / sub) for role, sub in ROLES.items()})


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """Point huggingface_hub (in this process) and the hash cache at empty temporary folders."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv(file_hashes.CACHE_ENV, str(tmp_path / "hashes.json"))
    return tmp_path / "hub"


# --- without torch: what is present, and what the records say ---------------------------------

def test_fp16_only_cache_counts_as_present(tiny_model, hub_cache):
    fake_hub_cache(tiny_model, hub_cache, fp16=True, symlinks=False)
    spec = models.real_spec(hub_settings())
    assert models.missing_files(spec) == []
    assert spec.source("base").variant("unet") == "fp16"
    assert spec.source("base").variant("tokenizer") is None


def test_missing_weight_names_both_file_names(tiny_model, hub_cache):
    snapshots = fake_hub_cache(tiny_model, hub_cache, fp16=True, symlinks=False)
    (snapshots["controlnet:normal"] / "diffusion_pytorch_model.fp16.safetensors").unlink()
    assert models.missing_files(models.real_spec(hub_settings())) == [
        "rubble-test/controlnet-normal@main: diffusion_pytorch_model.safetensors or "
        "diffusion_pytorch_model.fp16.safetensors"
    ]


def test_local_directory_is_checked_on_disk(tiny_model, tmp_path, hub_cache):
    local = tmp_path / "local"
    shutil.copytree(tiny_model, local)
    assert models.missing_files(models.real_spec(local_settings(local))) == []
    (local / "base" / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    (missing,) = models.missing_files(models.real_spec(local_settings(local)))
    assert missing.startswith(f"{local / 'base'}: vae/diffusion_pytorch_model.safetensors or ")


def test_a_path_that_is_not_there_is_reported_missing_not_a_crash(hub_cache, tmp_path):
    nowhere = str(tmp_path / "nowhere" / "sd15")
    spec = models.real_spec(settings(base=nowhere))
    assert any(m.startswith(nowhere) for m in models.missing_files(spec))
    hint = models.download_hint(spec)
    assert f"{nowhere!r} ([model] base) is neither a directory on this machine nor a Hugging Face id" in hint
    assert "python -m inference fetch" in hint
    assert "guoyww/animatediff-motion-adapter-v1-5-3@" in hint and f"{nowhere}@" not in hint


def test_copied_cache_records_file_hashes_computed_once(tiny_model, hub_cache):
    snapshots = fake_hub_cache(tiny_model, hub_cache, fp16=True, symlinks=False)
    spec = models.real_spec(hub_settings())
    described = models.describe(spec)["sources"]
    for role, snapshot in snapshots.items():
        assert described[role]["commit"] == snapshot.name
        assert described[role]["sha256"] == {name: sha256(snapshot / name) for name in described[role]["sha256"]}
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in described["base"]["sha256"]

    # A second run reads the hash cache, keyed by path, size and mtime: a planted digest is
    # returned as long as the file is unchanged, and recomputed once the file changes.
    weights = snapshots["controlnet:depth"] / "diffusion_pytorch_model.fp16.safetensors"
    cache = json.loads(file_hashes.cache_path().read_text())
    cache[str(weights.resolve())]["sha256"] = "0" * 64
    file_hashes.cache_path().write_text(json.dumps(cache))
    assert models.describe(spec)["sources"]["controlnet:depth"]["sha256"][weights.name] == "0" * 64
    weights.write_bytes(weights.read_bytes())  # same bytes, new mtime
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert models.describe(spec)["sources"]["controlnet:depth"]["sha256"][weights.name] == sha256(weights)


def test_symlinked_cache_takes_the_digest_from_the_blob_name(tiny_model, hub_cache):
    snapshots = fake_hub_cache(tiny_model, hub_cache, fp16=False, symlinks=True)
    described = models.describe(models.real_spec(hub_settings()))["sources"]
    unet = snapshots["base"] / "unet" / "diffusion_pytorch_model.safetensors"
    assert described["base"]["sha256"]["unet/diffusion_pytorch_model.safetensors"] == sha256(unet)
    cached = json.loads(file_hashes.cache_path().read_text()) if file_hashes.cache_path().exists() else {}
    assert str(unet.resolve()) not in cached, "a blob named by its sha256 is not hashed again"


def test_relative_and_absolute_local_paths_describe_the_same_model(tiny_model, tmp_path, monkeypatch, hub_cache):
    monkeypatch.chdir(tiny_model.parent)
    relative = models.describe(models.real_spec(settings({r: f"{tiny_model.name}/{s}" for r, s in ROLES.items()})))
    absolute = models.describe(models.real_spec(local_settings(tiny_model)))
    assert relative == absolute
    assert absolute["sources"]["base"]["commit"] is None
    assert absolute["sources"]["base"]["sha256"]["unet/diffusion_pytorch_model.safetensors"] == sha256(
        tiny_model / "base" / "unet" / "diffusion_pytorch_model.safetensors")


# --- end to end: generate --weights pretrained, never a download -------------------------------

def generate_pretrained(tmp_path: Path, locations: dict, env: dict) -> dict:
    model, controls = preset_parts(locations)
    shot = make_shot(tmp_path / "shot", frames=2, model=model, controls=controls)
    run = run_backend("generate", str(shot), "--weights", "pretrained", "--device", "cpu",
                      env={"HF_HUB_OFFLINE": "1", file_hashes.CACHE_ENV: str(tmp_path / "hashes.json"), **env})
    assert run.returncode == 0, run.stderr + json.dumps(run.of_type("error"))
    assert run.of_type("result")[0]["smoke_test"] is False
    return json.loads((shot / "provenance.json").read_text())["model"]["used"]


def test_generate_from_a_copied_fp16_only_cache(tiny_model, tmp_path):
    snapshots = fake_hub_cache(tiny_model, tmp_path / "hub", fp16=True, symlinks=False)
    used = generate_pretrained(tmp_path, IDS, {"HF_HUB_CACHE": str(tmp_path / "hub")})
    assert used["smoke_test"] is False
    for role, snapshot in snapshots.items():
        record = used["sources"][role]
        assert record["id"] == IDS[role] and record["commit"] == snapshot.name
        weights = [name for name in record["sha256"] if name.endswith(".safetensors")]
        assert weights and all(name.endswith(".fp16.safetensors") for name in weights)
        assert record["sha256"] == {name: sha256(snapshot / name) for name in record["sha256"]}


def test_generate_from_local_directories(tiny_model, tmp_path):
    used = generate_pretrained(tmp_path, {role: str(tiny_model / sub) for role, sub in ROLES.items()},
                               {"HF_HUB_CACHE": str(tmp_path / "empty-hub")})
    for role, sub in ROLES.items():
        record = used["sources"][role]
        assert record["id"] == str(tiny_model / sub) and record["commit"] is None
        assert record["sha256"] and record["sha256"] == {n: sha256(tiny_model / sub / n) for n in record["sha256"]}


# --- the motion adapter is not kept twice --------------------------------------------------------

def module_bytes(*modules) -> int:
    """Bytes of the parameters and buffers of torch modules (a pipeline's components, for example)."""
    return sum(t.numel() * t.element_size() for m in modules for t in [*m.parameters(), *m.buffers()])


def pipeline_bytes(pipe) -> int:
    import torch

    return module_bytes(*(m for m in pipe.components.values() if isinstance(m, torch.nn.Module)))


def test_pipeline_keeps_the_motion_modules_only_inside_the_unet(tiny_model):
    import torch
    from diffusers import AnimateDiffControlNetPipeline, MotionAdapter, UNet2DConditionModel

    spec = models.tiny_spec(tiny_model, settings().controls)
    pipe = models.load_pipeline(spec, "cpu")
    assert pipe.motion_adapter is None
    assert not any(isinstance(m, MotionAdapter) for m in pipe.components.values())

    # What the pipeline builds when handed the adapter: the same UNet, plus the adapter's copy.
    adapter = MotionAdapter.from_pretrained(str(tiny_model / ROLES["motion_adapter"]))
    both = AnimateDiffControlNetPipeline(
        **{**pipe.components, "motion_adapter": adapter,
           "unet": UNet2DConditionModel.from_pretrained(str(tiny_model / ROLES["base"]), subfolder="unet")},
    ).to("cpu")
    both.set_progress_bar_config(disable=True)
    assert pipeline_bytes(both) - pipeline_bytes(pipe) == module_bytes(adapter) > 0

    def frames(p):
        latents = torch.randn((1, 4, 2, 10, 16), generator=torch.Generator("cpu").manual_seed(0))
        conditioning = [[np.full((80, 128, 3), 0.5, np.float32)] * 2] * len(KINDS)
        return p(prompt="a building", num_frames=2, width=128, height=80, num_inference_steps=2,
                 conditioning_frames=conditioning, latents=latents, output_type="np").frames[0]

    assert np.array_equal(frames(pipe), frames(both)), "same weights, same noise: the same frames"
