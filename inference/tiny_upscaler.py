"""A tiny, seeded, random-weight stand-in for stabilityai/stable-diffusion-x4-upscaler, built locally.

Same classes and hub layout as the real repository (model_index.json + unet, vae, text_encoder,
tokenizer, scheduler, low_res_scheduler), written by StableDiffusionUpscalePipeline.save_pretrained,
so inference/upscale.py loads it with the code that loads the real one. Shapes follow diffusers' fast
test (tests/pipelines/stable_diffusion_2/test_stable_diffusion_upscale.py, get_dummy_components),
smaller: a 7-channel UNet input (4 latent + 3 image channels) with a class embedding for the noise
level, and a 3-block VAE, which upsamples by 4 as the real one does. Its frames are noise-like.

It lives beside the tiny generation model, not inside it: the tiny model's tree hash names the
generated windows, and building the upscaler must not make them stale.
"""

import json
from pathlib import Path

from .tiny_model import SEED, _remove_tree, _tokenizer
from .upscale_settings import MAX_NOISE_LEVEL

MARKER = "rubble_tiny_upscaler.json"
CROSS_ATTENTION_DIM = 8
BLOCK_OUT_CHANNELS = (8, 8, 16)
# Three VAE blocks -> two 2x steps -> the real upscaler's x4 (its vae/config.json: 128, 256, 512).
VAE_BLOCK_OUT_CHANNELS = (8, 8, 8)
# The real upscaler's VAE scaling factor (the pipeline resets any other value to it, with a warning).
VAE_SCALING_FACTOR = 0.08333
# The noise level enters the UNet as a class label: the real UNet has num_class_embeds = 1000.
NUM_CLASS_EMBEDS = MAX_NOISE_LEVEL + 1


def location(tiny_model_dir: Path) -> Path:
    """Where the tiny upscaler of a tiny model directory lives: its sibling `<name>-upscaler`."""
    tiny_model_dir = Path(tiny_model_dir)
    return tiny_model_dir.with_name(tiny_model_dir.name + "-upscaler")


def is_tiny_upscaler(path: Path) -> bool:
    return (Path(path) / MARKER).is_file()


def build(out_dir: Path) -> None:
    """Build and save it under out_dir, atomically as a whole (a folder beside it, then renamed)."""
    import torch
    from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        _remove_tree(tmp)
    torch.manual_seed(SEED)
    unet = UNet2DConditionModel(
        block_out_channels=BLOCK_OUT_CHANNELS,
        layers_per_block=1,
        sample_size=16,
        in_channels=7,
        out_channels=4,
        # No attention at full resolution: the upscaler's UNet runs at the low-resolution frame's size.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=CROSS_ATTENTION_DIM,
        attention_head_dim=4,
        use_linear_projection=True,
        only_cross_attention=(True, True, False),
        num_class_embeds=NUM_CLASS_EMBEDS,
        norm_num_groups=4,
    )
    torch.manual_seed(SEED)
    vae = AutoencoderKL(
        block_out_channels=VAE_BLOCK_OUT_CHANNELS,
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * len(VAE_BLOCK_OUT_CHANNELS),
        up_block_types=["UpDecoderBlock2D"] * len(VAE_BLOCK_OUT_CHANNELS),
        latent_channels=4,
        norm_num_groups=4,
        scaling_factor=VAE_SCALING_FACTOR,
    )
    tokenizer = _tokenizer()
    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        hidden_size=CROSS_ATTENTION_DIM, intermediate_size=37, layer_norm_eps=1e-05, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=tokenizer.model_max_length, vocab_size=len(tokenizer),
        hidden_act="gelu",
    ))
    # The real repository's schedulers: DDPM adds the noise_level noise to the low-resolution frame,
    # DDIM with v-prediction denoises (its scheduler/scheduler_config.json).
    StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        low_res_scheduler=DDPMScheduler(), scheduler=DDIMScheduler(prediction_type="v_prediction"),
        safety_checker=None, feature_extractor=None, watermarker=None, max_noise_level=MAX_NOISE_LEVEL,
    ).save_pretrained(tmp, safe_serialization=True)
    (tmp / MARKER).write_text(json.dumps({"what": "random weights — smoke test", "seed": SEED}, ensure_ascii=False)
                              + "\n", encoding="utf-8")
    if out_dir.exists():
        _remove_tree(out_dir)
    tmp.rename(out_dir)
