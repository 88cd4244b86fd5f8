"""A tiny, seeded, random-weight Wan2.1-VACE built locally: the stand-in for the real
Wan-AI/Wan2.1-VACE-*-diffusers repositories, so the real loading and generation code
(WanVACEPipeline) runs end to end without any download.

Shapes follow diffusers' own fast test (tests/pipelines/wan/test_wan_vace.py,
`get_dummy_components`): the VAE (base_dim 3, z_dim 16, temporal downsampling x4, spatial x8)
and the VACE transformer (2 heads of 12, text_dim 32, 3 layers, VACE layers 0 and 2). That test
loads its text encoder and tokenizer from the hub (hf-internal-testing/tiny-random-t5); here
the encoder is a UMT5 (Wan's text encoder class) built from a config of the same size, and the
tokenizer is built with the `tokenizers` library: one token per character, no network.
Saved by WanVACEPipeline.save_pretrained, so the folder has the hub repository's layout
(model_index.json + one subfolder per component). Its frames are noise; they prove the plumbing.
"""

import json
from pathlib import Path

BASE = "base"  # the pipeline folder, as the hub repository holds it
MARKER = "rubble_tiny_wan_vace.json"
VERSION = 1  # bump to rebuild caches made by an older builder
SEED = 0
TEXT_DIM = 32  # the transformer's text_dim = the encoder's d_model (diffusers' test: tiny-random-t5's 32)
MAX_TOKENS = 512  # Wan's max_sequence_length (WanVACEPipeline's default)
# Characters the tokenizer knows; anything else is <unk>. Metaspace turns spaces into "▁".
ALPHABET = "▁abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-()/&%+=_"


def directory(tiny_root: Path) -> Path:
    """Where the Wan tiny model lives for a tiny-model directory: a sibling folder, so neither
    family's builder (each replaces its folder atomically) removes the other's."""
    tiny_root = Path(tiny_root)
    return tiny_root.with_name(tiny_root.name + "-wan-vace")


def is_tiny_model(path: Path) -> bool:
    try:
        marker = json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("version") == VERSION


def build(out_dir: Path) -> None:
    """Build and save the tiny Wan VACE under out_dir/base, atomically (a temporary folder renamed)."""
    import shutil

    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanVACEPipeline, WanVACETransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)

    torch.manual_seed(SEED)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    tokenizer = _tokenizer()
    torch.manual_seed(SEED)
    # tiny-random-t5's sizes (d_model 32, d_ff 37, 4 heads of 8), fewer layers.
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=len(tokenizer), d_model=TEXT_DIM, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id,
    ))
    torch.manual_seed(SEED)
    transformer = WanVACETransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=TEXT_DIM, freq_dim=256, ffn_dim=32, num_layers=3, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32, vace_layers=[0, 2], vace_in_channels=96,
    )
    # The scheduler the real repositories ship (UniPC on flow-matching sigmas, flow_shift 3.0 for 480p:
    # diffusers' Wan docs); diffusers' fast test uses FlowMatchEulerDiscreteScheduler, which also loads.
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    WanVACEPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                    transformer=transformer).save_pretrained(tmp / BASE, safe_serialization=True)
    (tmp / MARKER).write_text(json.dumps({"what": "random weights — smoke test", "seed": SEED, "version": VERSION},
                                         ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)


def _tokenizer():
    """A T5-style tokenizer (SentencePiece-like Unigram over single characters, "▁" for spaces,
    </s> appended), built in memory with the `tokenizers` library and wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]  # T5's ids 0, 1, 2
    vocab = [(token, 0.0) for token in specials] + [(char, -1.0) for char in ALPHABET]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=MAX_TOKENS,
                                   pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
