"""A motion LoRA named in [noise] motion_lora: loaded into the motion modules through diffusers'
load_lora_weights (peft), recorded by content, and it changes the frames. The LoRA is built here,
for the tiny model's motion modules, with peft and saved as diffusers saves LoRAs."""

import json
from pathlib import Path

import pytest

from conftest import make_shot, run_backend
from inference import file_hashes, models, noise_warp
from inference import shot as shot_module


def build_motion_lora(tiny_model: Path, controls, out: Path) -> Path:
    """Random LoRA weights (B not zero) on the motion modules' attention projections, where guoyww's
    motion LoRAs act."""
    import torch
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    pipe = models.load_pipeline(models.tiny_spec(tiny_model, controls), "cpu")
    targets = [name for name, _ in pipe.unet.named_modules()
               if "motion_modules" in name and name.endswith(("to_q", "to_k", "to_v"))]
    torch.manual_seed(0)
    pipe.unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=targets, init_lora_weights=False))
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
    type(pipe).save_lora_weights(out, unet_lora_layers=layers, safe_serialization=True)
    (path,) = out.glob("*.safetensors")
    return path


@pytest.fixture(scope="module")
def lora(tmp_path_factory, tiny_model):
    shot = make_shot(tmp_path_factory.mktemp("lora") / "shot", frames=2)
    return build_motion_lora(tiny_model, shot_module.load(shot).model.controls, tmp_path_factory.mktemp("weights"))


def test_the_motion_lora_loads_into_the_motion_modules_only(lora, tiny_model, tmp_path):
    shot = shot_module.load(make_shot(tmp_path / "shot", frames=2))
    pipe = models.load_pipeline(models.tiny_spec(tiny_model, shot.model.controls), "cpu")
    noise_warp.load_motion_lora(pipe, lora)
    assert pipe.get_list_adapters() == {"unet": ["motion"]}
    lora_modules = [name for name, module in pipe.unet.named_modules() if hasattr(module, "lora_A")]
    assert lora_modules and all("motion_modules" in name for name in lora_modules)


def test_generate_with_a_motion_lora_runs_and_records_it_by_content(lora, tiny_model, tmp_path):
    """The tiny model's motion modules end in a zero-initialised proj_out (diffusers' MotionAdapter
    default), so no motion LoRA can change its frames: this checks the run and the record, the test
    above that the weights land in the motion modules. (A LoRA on proj_out itself fails inside
    diffusers 0.42.1 with "Linear.forward() missing 1 required positional argument".)"""
    plain, tuned = make_shot(tmp_path / "plain", frames=2), make_shot(tmp_path / "tuned", frames=2)
    data = json.loads((tuned / "shot.json").read_text())
    data["preset"]["noise"]["motion_lora"] = str(lora)
    (tuned / "shot.json").write_text(json.dumps(data))
    for shot in (plain, tuned):
        run = run_backend("generate", str(shot), "--tiny-model", str(tiny_model))
        assert run.returncode == 0, run.stderr
    assert len(list((tuned / "frames").glob("*.png"))) == 2
    noise = json.loads((tuned / "provenance.json").read_text())["noise"]
    assert noise["motion_lora"] == str(lora) and noise["motion_lora_sha256"] == file_hashes.sha256(lora)
    assert "motion_lora_sha256" not in json.loads((plain / "provenance.json").read_text())["noise"]
