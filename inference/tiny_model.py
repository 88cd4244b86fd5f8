"""A tiny, seeded, random-weight stand-in for the real model, built and saved locally.

It uses the same architecture classes as the real AnimateDiff + ControlNet stack so that
the real loading and generation code runs end to end without any download. Its
dimensions follow diffusers' own fast test
(tests/pipelines/animatediff/test_animatediff_controlnet.py, `get_dummy_components`),
except where the real stack's shapes matter to us: the VAE and the ControlNet's
conditioning embedding downsample by 8, like SD1.5, so latent sizes match.
Its frames are noise-like; they prove the plumbing, never the look.
"""

import json
from pathlib import Path

from .shot import CONTROL_KINDS

# One folder per hub repository, in its layout, so one loader and one file list
# (inference/models.py) serve both.
BASE = "base"
MOTION_ADAPTER = "motion_adapter"
# Stands for the draft tier's few-step adapter (wangfuyun/AnimateLCM, inference/draft.py): the same
# MotionAdapter shape under a second name, with its own seed, as AnimateLCM's weights differ from AnimateDiff's.
DRAFT_MOTION_ADAPTER = "motion_adapter_lcm"
DRAFT_SEED = 7
CONTROLNET = "controlnet"  # one ControlNet per control kind: controlnet_folder(kind)
MARKER = "rubble_tiny_model.json"

SEED = 0
CROSS_ATTENTION_DIM = 8
BLOCK_OUT_CHANNELS = (8, 8)
# Four encoder/decoder blocks -> three 2x downsamples -> vae_scale_factor 8, as in SD1.5.
VAE_BLOCK_OUT_CHANNELS = (8, 8, 8, 8)
# The ControlNet embeds the full-resolution control image down to latent size (SD1.5: 4 entries, 8x).
CONDITIONING_EMBEDDING_OUT_CHANNELS = (4, 8, 8, 8)
# diffusers' test puts attention in the full-resolution block; at 512x320 that is 2,560 tokens
# per frame and most of the CPU time. Attention one level down (640 tokens) keeps every
# class and code path but makes a 16-frame, 20-step window take seconds, not minutes.
DOWN_BLOCK_TYPES = ("DownBlock2D", "CrossAttnDownBlock2D")
UP_BLOCK_TYPES = ("CrossAttnUpBlock2D", "UpBlock2D")
CONTROL_OUTPUT_GAIN = 16.0  # measured: makes a changed depth map move the tiny model's frames visibly
MAX_TOKENS = 77  # CLIP's context length, which the SD pipelines pad prompts to


def is_tiny_model(path: Path) -> bool:
    """A tiny model of this version: its marker names a ControlNet for every control kind (one built
    before a kind existed is rebuilt; a folder whose marker does, but whose files are gone, fails to
    load with a clear error instead)."""
    try:
        marker = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return set(CONTROL_KINDS) <= set(marker.get("controlnets", ())) and DRAFT_MOTION_ADAPTER in marker.get("adapters", ())


def controlnet_folder(kind: str) -> str:
    return f"{CONTROLNET}_{kind}"


def build(out_dir: Path) -> None:
    """Build the tiny model and save it (safetensors) under out_dir, atomically as a whole:
    one folder per hub repository it stands for, in that repository's layout."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        _remove_tree(tmp)
    build_base(tmp / BASE)
    build_motion_adapter(tmp / MOTION_ADAPTER)
    build_motion_adapter(tmp / DRAFT_MOTION_ADAPTER, DRAFT_SEED)
    for number, kind in enumerate(CONTROL_KINDS):  # each its own weights, as real ControlNets differ
        build_controlnet(tmp / controlnet_folder(kind), SEED + 2 * number)
    (tmp / MARKER).write_text(
        json.dumps({"what": "random weights — smoke test", "seed": SEED, "controlnets": list(CONTROL_KINDS),
                    "adapters": [MOTION_ADAPTER, DRAFT_MOTION_ADAPTER]},
                   ensure_ascii=False, indent=2) + "\n",
        encoding="utf-8",
    )
    if out_dir.exists():
        _remove_tree(out_dir)
    tmp.rename(out_dir)


def build_base(directory: Path) -> None:
    """Stands for stable-diffusion-v1-5/stable-diffusion-v1-5: a diffusers pipeline folder
    (model_index.json + unet, vae, text_encoder, tokenizer, scheduler), written by
    StableDiffusionPipeline.save_pretrained as the hub repository was. No safety checker."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(SEED)
    unet = UNet2DConditionModel(
        block_out_channels=BLOCK_OUT_CHANNELS,
        layers_per_block=2,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=DOWN_BLOCK_TYPES,
        up_block_types=UP_BLOCK_TYPES,
        cross_attention_dim=CROSS_ATTENTION_DIM,
        norm_num_groups=2,
    )

    torch.manual_seed(SEED)
    vae = AutoencoderKL(
        block_out_channels=VAE_BLOCK_OUT_CHANNELS,
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * len(VAE_BLOCK_OUT_CHANNELS),
        up_block_types=["UpDecoderBlock2D"] * len(VAE_BLOCK_OUT_CHANNELS),
        latent_channels=4,
        norm_num_groups=2,
    )

    tokenizer = _tokenizer()
    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_size=CROSS_ATTENTION_DIM,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=5,
            max_position_embeddings=MAX_TOKENS,
            vocab_size=len(tokenizer),
        )
    )

    # DDIM with the settings the diffusers AnimateDiff docs use for SD1.5 motion adapters.
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="linear",
        clip_sample=False,
        timestep_spacing="linspace",
        steps_offset=1,
    )
    StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(directory, safe_serialization=True)


def build_motion_adapter(directory: Path, seed: int = SEED) -> None:
    """Stands for guoyww/animatediff-motion-adapter-v1-5-3 (or, with DRAFT_SEED, wangfuyun/AnimateLCM):
    config.json + weights at the root."""
    import torch
    from diffusers import MotionAdapter

    torch.manual_seed(seed)
    MotionAdapter(
        block_out_channels=BLOCK_OUT_CHANNELS,
        motion_layers_per_block=2,
        motion_norm_num_groups=2,
        motion_num_attention_heads=4,
    ).save_pretrained(directory, safe_serialization=True)


def build_controlnet(directory: Path, seed: int = SEED) -> None:
    """Stands for one ControlNet 1.1 repository (e.g. lllyasviel/control_v11f1p_sd15_depth):
    config.json + weights at the root. Each kind gets its own seed, as real ControlNets differ."""
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    controlnet = ControlNetModel(
        block_out_channels=BLOCK_OUT_CHANNELS,
        layers_per_block=2,
        in_channels=4,
        down_block_types=DOWN_BLOCK_TYPES,
        cross_attention_dim=CROSS_ATTENTION_DIM,
        conditioning_embedding_out_channels=CONDITIONING_EMBEDDING_OUT_CHANNELS,
        norm_num_groups=2,
    )
    _randomise_zero_convolutions(controlnet, seed)
    controlnet.save_pretrained(directory, safe_serialization=True)


def _randomise_zero_convolutions(controlnet, seed: int) -> None:
    """A fresh ControlNet's output convolutions are zero (ControlNet paper, "zero convolution"),
    so its control input would change nothing. Random-initialise them, seeded, so tests can see
    that different control maps give different frames.

    The conditioning embedding is re-initialised too: with 4-8 channels and PyTorch's default
    init the control signal shrinks ~4x per layer and is gone after its seven convolutions.
    He-normal weights (He et al. 2015, std sqrt(2 / fan_in)) and zero biases keep it alive, and
    a gain on the output convolutions makes the control as loud as the latent it steers.
    """
    import torch

    generator = torch.Generator("cpu").manual_seed(seed + 1)
    embedding = controlnet.controlnet_cond_embedding
    hidden = [embedding.conv_in, *embedding.blocks]
    outputs = [embedding.conv_out, controlnet.controlnet_mid_block, *controlnet.controlnet_down_blocks]
    with torch.no_grad():
        for conv in hidden + outputs:
            gain = CONTROL_OUTPUT_GAIN if conv in outputs else 1.0
            fan_in = conv.weight[0].numel()
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * gain * (2.0 / fan_in) ** 0.5)
            conv.bias.zero_()


def _tokenizer():
    """A CLIP tokenizer with no merges: every byte is a token (the real one has 49,408 BPE tokens).

    Byte-level BPE maps bytes to printable characters (GPT-2's `bytes_to_unicode`); a word's
    last symbol carries the "</w>" suffix (CLIP's end-of-word marker), so both forms are needed.
    """
    from transformers import CLIPTokenizer

    symbols = _byte_level_alphabet()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in symbols:
        vocab[symbol] = len(vocab)
    for symbol in symbols:
        vocab[symbol + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=MAX_TOKENS)


def _byte_level_alphabet() -> list[str]:
    # GPT-2's bytes_to_unicode (openai/gpt-2 src/encoder.py): printable bytes map to themselves,
    # the rest to code points from 256 upwards.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    code_points = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            code_points.append(256 + extra)
            extra += 1
    return [chr(c) for c in code_points]


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)
