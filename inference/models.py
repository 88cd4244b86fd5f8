"""Which weights to use and how to load them (preset `[model]`), without ever downloading.

Real weights load with `from_pretrained(id, revision=…, use_safetensors=True,
local_files_only=True)` from the Hugging Face cache. When they are absent, `weights = "auto"`
falls back loudly to the tiny random-weight model; `"pretrained"` refuses with what to download.
"""

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from . import files, protocol, tiny_model
from .protocol import BackendError
from .shot import ModelSettings

TINY_ENV = "RUBBLE_TINY_MODEL"
DEFAULT_TINY_DIR = Path.home() / ".cache" / "rubble" / "tiny-model"
SMOKE_TEST = "random weights — smoke test"

# What each repository must hold for this pipeline (diffusers' SD1.5 / adapter / ControlNet layouts).
BASE_FILES = (
    "model_index.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "scheduler/scheduler_config.json",
)
SINGLE_MODEL_FILES = ("config.json", "diffusion_pytorch_model.safetensors")


@dataclass(frozen=True)
class Source:
    """One model repository: a hub id + revision (real) or a local directory (tiny)."""

    role: str  # "base", "motion_adapter", "controlnet"
    location: str  # hub id or local path
    revision: str | None
    required: tuple[str, ...]


@dataclass(frozen=True)
class ModelSpec:
    smoke_test: bool  # True: the tiny random-weight model, never a real look
    sources: tuple[Source, ...]

    def source(self, role: str) -> Source:
        return next(s for s in self.sources if s.role == role)


def real_spec(model: ModelSettings) -> ModelSpec:
    return ModelSpec(
        smoke_test=False,
        sources=(
            Source("base", model.base, model.base_revision, BASE_FILES),
            Source("motion_adapter", model.motion_adapter, model.motion_adapter_revision, SINGLE_MODEL_FILES),
            Source("controlnet", model.controlnet, model.controlnet_revision, SINGLE_MODEL_FILES),
        ),
    )


def tiny_spec(tiny_dir: Path) -> ModelSpec:
    return ModelSpec(
        smoke_test=True,
        sources=tuple(
            Source(role, str(tiny_dir / sub), None, ())
            for role, sub in (
                ("base", tiny_model.BASE),
                ("motion_adapter", tiny_model.MOTION_ADAPTER),
                ("controlnet", tiny_model.CONTROLNET),
            )
        ),
    )


def tiny_dir(cli_value: str | None) -> Path:
    return Path(cli_value or os.environ.get(TINY_ENV) or DEFAULT_TINY_DIR).expanduser()


def missing_files(spec: ModelSpec) -> list[str]:
    """'id@revision: file' for every required file not in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    missing = []
    for source in spec.sources:
        for filename in source.required:
            found = try_to_load_from_cache(source.location, filename, revision=source.revision)
            if not isinstance(found, str):  # None or the "known not to exist" sentinel
                missing.append(f"{source.location}@{source.revision}: {filename}")
    return missing


def motion_adapter_config(spec: ModelSpec) -> dict:
    """The motion adapter's config.json (a local directory, or the Hugging Face cache), no weights loaded."""
    source = spec.source("motion_adapter")
    path = Path(source.location) / "config.json"
    if not path.is_file():
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source.location, "config.json", revision=source.revision)
        if not isinstance(found, str):  # None or the "known not to exist" sentinel
            raise BackendError(
                "missing_weights",
                f"The motion adapter's config.json is not on this machine ({source.location}@{source.revision}).",
                download_hint(spec) if not spec.smoke_test else f"Rebuild it: python -m inference tiny-model {Path(source.location).parent}",
            )
        path = Path(found)
    return json.loads(path.read_text(encoding="utf-8"))


def download_hint(spec: ModelSpec) -> str:
    from huggingface_hub import constants

    commands = "; ".join(f"hf download {s.location} --revision {s.revision}" for s in spec.sources)
    return (
        f"For real frames, download the weights on a machine with network access ({commands}) into the "
        f"Hugging Face cache ({constants.HF_HUB_CACHE}; set HF_HOME to move it). Rubble never downloads."
    )


def resolve(model: ModelSettings, weights: str, tiny_location: Path) -> ModelSpec:
    """Pick real or tiny weights per `weights` (auto | pretrained | tiny)."""
    if weights != "tiny":
        real = real_spec(model)
        missing = missing_files(real)
        if not missing:
            return real
        if weights == "pretrained":
            raise BackendError(
                "missing_weights",
                f"The preset's weights are not on this machine; missing: {', '.join(missing)}.",
                download_hint(real) + ' Or set [model] weights = "auto" (or "tiny") for a random-weight smoke test.',
            )
        protocol.warning(
            "random_weights",
            "Real weights are not on this machine; generating with the tiny RANDOM-WEIGHT model. "
            "The frames are a smoke test, not a look. " + download_hint(real),
        )
    if not tiny_model.is_tiny_model(tiny_location):
        print(f"Building the tiny model in {tiny_location}", file=sys.stderr)
        tiny_model.build(tiny_location)
    return tiny_spec(tiny_location)


def pick_device(requested: str | None, spec: ModelSpec) -> str:
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise BackendError(
            "no_gpu",
            "--device cuda was asked for, but torch sees no CUDA GPU.",
            "Use --device cpu, or check the NVIDIA driver and that the CUDA build of torch is installed.",
        )
    device = requested or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu" and not spec.smoke_test:
        protocol.warning("no_gpu", "Generating with real weights on the CPU: expect minutes per step.")
    return device


def load_pipeline(spec: ModelSpec, device: str):
    """The AnimateDiff + ControlNet pipeline, every component from local files only."""
    import torch
    from diffusers import (
        AnimateDiffControlNetPipeline,
        AutoencoderKL,
        ControlNetModel,
        DDIMScheduler,
        MotionAdapter,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTokenizer

    dtype = torch.float16 if device == "cuda" else torch.float32  # fp16 halves GPU memory; CPUs lack fast fp16
    base, adapter, controlnet = (spec.source(r) for r in ("base", "motion_adapter", "controlnet"))

    def load(cls, source: Source, subfolder: str | None = None, **extra):
        kwargs = {"revision": source.revision, "local_files_only": True, **extra}
        if subfolder:
            kwargs["subfolder"] = subfolder
        try:
            return cls.from_pretrained(source.location, **kwargs)
        except (OSError, ValueError) as exc:
            raise BackendError(
                "missing_weights",
                f"Could not load {source.role} from {source.location} ({subfolder or 'root'}): {exc}",
                download_hint(spec) if not spec.smoke_test else f"Rebuild it: python -m inference tiny-model {Path(source.location).parent}",
            ) from exc

    weights = {"use_safetensors": True, "torch_dtype": dtype}
    pipe = AnimateDiffControlNetPipeline(
        vae=load(AutoencoderKL, base, "vae", **weights),
        text_encoder=load(CLIPTextModel, base, "text_encoder", **weights),
        tokenizer=load(CLIPTokenizer, base, "tokenizer"),
        unet=load(UNet2DConditionModel, base, "unet", **weights),
        motion_adapter=load(MotionAdapter, adapter, **weights),
        controlnet=load(ControlNetModel, controlnet, **weights),
        # DDIM, linear betas, linspace spacing: the settings of diffusers' AnimateDiff docs for SD1.5 adapters.
        scheduler=load(
            DDIMScheduler, base, "scheduler",
            clip_sample=False, timestep_spacing="linspace", beta_schedule="linear", steps_offset=1,
        ),
    )
    pipe.set_progress_bar_config(disable=True)  # progress goes out as protocol events instead
    return pipe.to(device)  # the dtype was set per component at load


def describe(spec: ModelSpec) -> dict:
    """Model identity for records and provenance: ids, revisions, content hashes."""
    if spec.smoke_test:
        root = Path(spec.source("base").location).parent
        return {
            "smoke_test": True,
            "weights": SMOKE_TEST,
            "tiny_model": str(root),
            "tiny_model_sha256": files.sha256_tree(root),
        }
    from huggingface_hub import try_to_load_from_cache

    out = {"smoke_test": False, "weights": "pretrained", "sources": {}}
    for source in spec.sources:
        weights = {}
        commit = None
        for filename in source.required:
            path = Path(try_to_load_from_cache(source.location, filename, revision=source.revision))
            commit = path.parents[len(Path(filename).parts) - 1].name  # …/snapshots/<commit>/<filename>
            if filename.endswith(".safetensors"):
                # The cache stores LFS files as blobs named by their sha256 (huggingface_hub cache layout).
                weights[filename] = path.resolve().name
        out["sources"][source.role] = {"id": source.location, "revision": source.revision, "commit": commit, "sha256": weights}
    return out
