"""Which weights to use and how to load them (preset `[model]`), without ever downloading.

Each model in `[model]` is a Hugging Face id, loaded with `from_pretrained(id, revision=…,
use_safetensors=True, local_files_only=True)` from the Hugging Face cache, or a directory on
this machine in the same layout (a path that exists is loaded from disk; a relative one is
relative to the working directory). Weights may be the full files or only diffusers' fp16
variant (`*.fp16.safetensors`). When they are absent, `weights = "auto"` falls back loudly to
the tiny random-weight model; `"pretrained"` refuses and names `python -m inference fetch`
(inference/fetch.py), which downloads exactly the files listed here.
"""

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from . import file_hashes, files, memory, protocol, tiny_model
from .protocol import BackendError
from .shot import ModelSettings

TINY_ENV = "RUBBLE_TINY_MODEL"
DEFAULT_TINY_DIR = Path.home() / ".cache" / "rubble" / "tiny-model"
SMOKE_TEST = "random weights — smoke test"

# What each repository must hold for this pipeline (diffusers' SD1.5 / adapter / ControlNet
# layouts), as requirements: each is a tuple of options, an option a tuple of files that must all
# be present; the first option present is the one loaded. Weights: the full file, else diffusers'
# fp16 variant (the file name with ".fp16" before ".safetensors"). model_index.json is not
# needed: every component is loaded from its own subfolder. The same lists say what `fetch`
# downloads and describe the tiny model's layout (one source of truth for all three).
FP16 = "fp16"


def _weights(filename: str, sharded: bool = False) -> tuple[tuple[str, ...], ...]:
    """The full file, its fp16 variant, and (`sharded`) the index of a model saved in shards (what
    save_pretrained writes for large weights: `<file>.index.json` naming `<stem>-0000i-of-0000n.safetensors`)."""
    stem = filename.removesuffix(".safetensors")
    return ((filename,), (f"{stem}.{FP16}.safetensors",), *(((filename + INDEX,),) if sharded else ()))


INDEX = ".index.json"


def shard_pattern(index_file: str) -> re.Pattern:
    """The shard files a sharded-weights index stands for (transformers/diffusers shard naming)."""
    stem = index_file.removesuffix(INDEX).removesuffix(".safetensors")
    return re.compile(rf"{re.escape(stem)}-\d{{5}}-of-\d{{5}}\.safetensors")


BASE_FILES = (
    (("unet/config.json",),),
    _weights("unet/diffusion_pytorch_model.safetensors"),
    (("vae/config.json",),),
    _weights("vae/diffusion_pytorch_model.safetensors"),
    (("text_encoder/config.json",),),
    _weights("text_encoder/model.safetensors"),
    # The original CLIP files, or the fast tokenizer's single file (what transformers 5 saves).
    (("tokenizer/vocab.json", "tokenizer/merges.txt"), ("tokenizer/tokenizer.json",)),
    (("scheduler/scheduler_config.json",),),
)
SINGLE_MODEL_FILES = ((("config.json",),), _weights("diffusion_pytorch_model.safetensors"))
# Files read when present but not required: the tokenizer's settings (special tokens, maximum
# length) and the pipeline's index, which `fetch` downloads so the cache holds a complete
# diffusers pipeline folder like the hub repository's.
BASE_OPTIONAL = (
    "model_index.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/special_tokens_map.json",
    "tokenizer/added_tokens.json",
)
# A pinned revision is a full commit hash; anything else ("main", a tag) is a name that can move.
COMMIT = re.compile(r"[0-9a-f]{40}")
# The Hugging Face cache names a weight file's blob by its sha256 (huggingface_hub cache layout).
SHA256_NAME = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Source:
    """One model repository: a hub id + revision, or a local directory (real weights or the tiny model)."""

    role: str  # "base", "motion_adapter", or controlnet_role(kind) for each of [[controls]]
    location: str  # hub id or local path
    revision: str | None
    required: tuple[tuple[tuple[str, ...], ...], ...]  # requirements -> options -> files, see BASE_FILES
    optional: tuple[str, ...] = ()  # read when present, see BASE_OPTIONAL
    # Where the preset names it and pins its revision, for messages, e.g. ("[upscale] model",
    # "[upscale] revision"); None: [model] <role> or the role's [[controls]] table.
    settings: tuple[str, str] | None = None

    @property
    def directory(self) -> Path | None:
        """The local directory this source names, or None for a hub id."""
        path = Path(self.location).expanduser()
        return path.resolve() if path.is_dir() else None

    def find(self, filename: str) -> Path | None:
        """Where `filename` is on this machine (local directory or Hugging Face cache), or None."""
        if self.directory is not None:
            path = self.directory / filename
            return path if path.is_file() else None
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.errors import HFValidationError

        try:
            found = try_to_load_from_cache(self.location, filename, revision=self.revision)
        except HFValidationError:  # neither an existing directory nor a valid hub id
            return None
        return Path(found) if isinstance(found, str) else None  # None or the "known not to exist" sentinel

    def present_files(self) -> list[str] | None:
        """The files this source will load (the first present option of each requirement, a sharded
        index with its shards), or None if a requirement has no option present."""
        chosen = []
        for options in self.required:
            option = next((o for o in map(self.complete, options) if o is not None), None)
            if option is None:
                return None
            chosen += option
        return chosen

    def complete(self, option: tuple[str, ...]) -> tuple[str, ...] | None:
        """The option's files, with the shards of any sharded-weights index in it, when all are on
        this machine; else None."""
        if any(self.find(f) is None for f in option):
            return None
        shards = []
        for index in (f for f in option if f.endswith(INDEX)):
            folder = index.rpartition("/")[0]
            try:
                weight_map = json.loads(self.find(index).read_text(encoding="utf-8"))["weight_map"]
            except (OSError, ValueError, KeyError, TypeError):
                return None
            shards += sorted({f"{folder}/{name}" if folder else name for name in weight_map.values()})
        if any(self.find(f) is None for f in shards):
            return None
        return (*option, *shards)

    def variant(self, subfolder: str | None) -> str | None:
        """"fp16" when the weights present in `subfolder` are only diffusers' fp16 variant."""
        prefix = f"{subfolder}/" if subfolder else ""
        used = self.present_files() or []
        return FP16 if any(f.startswith(prefix) and f.endswith(f".{FP16}.safetensors") for f in used) else None

    @property
    def name(self) -> str:
        return str(self.directory) if self.directory is not None else f"{self.location}@{self.revision}"


@dataclass(frozen=True)
class ModelSpec:
    smoke_test: bool  # True: the tiny random-weight model, never a real look
    sources: tuple[Source, ...]

    def source(self, role: str) -> Source:
        return next(s for s in self.sources if s.role == role)


def real_spec(model: ModelSettings) -> ModelSpec:
    """The preset's models and the files each must hold; a family with other repositories than
    AnimateDiff's (base + motion adapter + ControlNets) says so with its own `real_spec`."""
    family_spec = getattr(_family(model), "real_spec", None)
    if family_spec is not None:
        return family_spec(model)
    return ModelSpec(
        smoke_test=False,
        sources=(
            Source("base", model.base, model.base_revision, BASE_FILES, BASE_OPTIONAL),
            Source("motion_adapter", model.motion_adapter, model.motion_adapter_revision, SINGLE_MODEL_FILES),
            *(Source(controlnet_role(c.kind), c.model, c.revision, SINGLE_MODEL_FILES) for c in model.controls),
        ),
    )


def controlnet_role(kind: str) -> str:
    """The Source role of the ControlNet of a [[controls]] kind."""
    return f"controlnet:{kind}"


def _setting(source: Source) -> str:
    """Where the preset names a source's model, for messages."""
    if source.settings:
        return source.settings[0]
    kind = source.role.removeprefix("controlnet:")
    return f"[[controls]] kind = {kind!r}" if kind != source.role else f"[model] {source.role}"


def _revision_setting(source: Source) -> str:
    """Where the preset pins a source's revision, for messages."""
    if source.settings:
        return source.settings[1]
    kind = source.role.removeprefix("controlnet:")
    return f"the [[controls]] table of kind {kind!r}: revision" if kind != source.role else f"[model] {source.role}_revision"


def tiny_spec(tiny_dir: Path, controls) -> ModelSpec:
    """The tiny model: the same repositories in the same layout, as local directories; a ControlNet
    for each of `controls`' kinds."""
    return ModelSpec(
        smoke_test=True,
        sources=(
            Source("base", str(tiny_dir / tiny_model.BASE), None, BASE_FILES, BASE_OPTIONAL),
            Source("motion_adapter", str(tiny_dir / tiny_model.MOTION_ADAPTER), None, SINGLE_MODEL_FILES),
            *(Source(controlnet_role(c.kind), str(tiny_dir / tiny_model.controlnet_folder(c.kind)), None,
                     SINGLE_MODEL_FILES) for c in controls),
        ),
    )


def is_pinned(revision: str | None) -> bool:
    return revision is not None and COMMIT.fullmatch(revision) is not None


def cached_commit(source: Source) -> str | None:
    """The commit a branch or tag name points to in this machine's Hugging Face cache
    (models--owner--name/refs/<name>, written when the files were downloaded), or None."""
    from huggingface_hub import constants

    if source.directory is not None or source.revision is None:
        return None
    ref = Path(constants.HF_HUB_CACHE) / f"models--{source.location.replace('/', '--')}" / "refs" / source.revision
    try:
        commit = ref.read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        return None
    return commit if COMMIT.fullmatch(commit) else None


def unpinned_revisions(spec: ModelSpec) -> list[str]:
    """A sentence per hub model whose revision is a branch or tag name, saying how to pin it."""
    messages = []
    for source in spec.sources:
        if source.directory is not None or not _is_hub_id(source.location) or is_pinned(source.revision):
            continue
        setting = _revision_setting(source)
        commit = cached_commit(source)
        if commit:
            how = (f'This machine\'s cache has {source.revision!r} at {commit}: set {setting} = "{commit}" '
                   "to keep using exactly these files.")
        else:
            how = (f"Set {setting} to a 40-digit commit hash: presets/README.md lists the commits Rubble uses, "
                   f"or take one from https://huggingface.co/{source.location}/commits/{source.revision}.")
        messages.append(f"{source.location}: revision {source.revision!r} is a branch or tag name, so the files "
                        f"it names can change and a shot is not reproducible. {how}")
    return messages


def tiny_dir(cli_value: str | None) -> Path:
    return Path(cli_value or os.environ.get(TINY_ENV) or DEFAULT_TINY_DIR).expanduser()


def missing_files(spec: ModelSpec) -> list[str]:
    """'id@revision: file' (or 'directory: file') for every requirement with no option on this machine."""
    missing = []
    for source in spec.sources:
        for options in source.required:
            if not any(source.complete(option) is not None for option in options):
                missing.append(f"{source.name}: {' or '.join(' + '.join(option) for option in options)}")
    return missing


def motion_adapter_config(spec: ModelSpec) -> dict:
    """The motion adapter's config.json (a local directory, or the Hugging Face cache), no weights loaded."""
    source = spec.source("motion_adapter")
    path = source.find("config.json")
    if path is None:
        raise BackendError(
            "missing_weights",
            f"The motion adapter's config.json is not on this machine ({source.location}@{source.revision}).",
            download_hint(spec) if not spec.smoke_test else f"Rebuild it: python -m inference tiny-model {Path(source.location).parent}",
        )
    return json.loads(path.read_text(encoding="utf-8"))


def download_hint(spec: ModelSpec) -> str:
    from huggingface_hub import constants

    hub = [s for s in spec.sources if s.directory is None and _is_hub_id(s.location)]
    local = [s for s in spec.sources if s.directory is not None]
    hints = [f"{s.location!r} ({_setting(s)}) is neither a directory on this machine nor a Hugging Face id."
             for s in spec.sources if s.directory is None and not _is_hub_id(s.location)]
    if hub:
        named = ", ".join(f"{s.location}@{s.revision}" for s in hub)
        hints.append(
            f"For real frames, run `python -m inference fetch SHOT` (or `fetch --preset PRESET.toml`) on a "
            f"machine with network access: it downloads {named} into the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}; set HF_HOME to move it). Generation itself never downloads."
        )
    if local:
        directories = ", ".join(str(s.directory) for s in local)
        hints.append(f"Complete the local model directories ({directories}) in the diffusers layout, "
                     "as the hub repository has it or save_pretrained() writes it.")
    return " ".join(hints)


def _is_hub_id(location: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(location)
    except HFValidationError:
        return False
    return True


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
    family_tiny = getattr(_family(model), "tiny_spec", None)
    if family_tiny is not None:  # the family's own tiny model (built on first use, like this one)
        return family_tiny(tiny_location, model)
    if not tiny_model.is_tiny_model(tiny_location):
        print(f"Building the tiny model in {tiny_location}", file=sys.stderr)
        tiny_model.build(tiny_location)
    return tiny_spec(tiny_location, model.controls)


def _family(model: ModelSettings):
    from . import families

    return families.get(model.family)


def pick_device(requested: str | None, spec: ModelSpec) -> str:
    """CUDA, then Apple MPS, then the CPU (memory.pick_device); warns when real weights meet the CPU."""
    device = memory.pick_device(requested)
    if device == "cpu" and not spec.smoke_test:
        protocol.warning("no_gpu", "Generating with real weights on the CPU: expect minutes per step.")
    return device


# DDIM, linear betas, linspace spacing: the settings of diffusers' AnimateDiff docs for SD1.5 adapters
# (the still preview uses them too, so it denoises along the shot's schedule).
DDIM_SETTINGS = {"clip_sample": False, "timestep_spacing": "linspace", "beta_schedule": "linear", "steps_offset": 1}


def load_component(spec: ModelSpec, cls, source: Source, subfolder: str | None = None, **extra):
    """`cls.from_pretrained` of one source (a subfolder of it), from local files only; a missing
    or broken file is a BackendError that says how to get it."""
    local = source.directory
    kwargs = {"revision": None if local else source.revision, "local_files_only": True, **extra}
    if subfolder:
        kwargs["subfolder"] = subfolder
    if "use_safetensors" in extra and source.variant(subfolder):
        kwargs["variant"] = source.variant(subfolder)
    try:
        return cls.from_pretrained(str(local or source.location), **kwargs)
    except (OSError, ValueError) as exc:
        raise BackendError(
            "missing_weights",
            f"Could not load {source.role} from {source.location} ({subfolder or 'root'}): {exc}",
            download_hint(spec) if not spec.smoke_test else f"Rebuild it: python -m inference tiny-model {Path(source.location).parent}",
        ) from exc


def load_pipeline(spec: ModelSpec, device: str, dtype: str | None = None, switches: memory.Memory | None = None):
    """The AnimateDiff + ControlNet pipeline, every component from local files only, in `dtype`
    (default: memory.dtype_name's choice for the device), on the device with the [memory] switches."""
    import torch
    from diffusers import (
        AnimateDiffControlNetPipeline,
        AutoencoderKL,
        ControlNetModel,
        DDIMScheduler,
        MotionAdapter,
        UNet2DConditionModel,
        UNetMotionModel,
    )
    from transformers import CLIPTextModel, CLIPTokenizer

    switches = switches or memory.Memory()
    dtype = getattr(torch, dtype or memory.dtype_name(device, switches))
    base, adapter = spec.source("base"), spec.source("motion_adapter")

    def load(cls, source: Source, subfolder: str | None = None, **extra):
        return load_component(spec, cls, source, subfolder, **extra)

    weights = {"use_safetensors": True, "torch_dtype": dtype}
    # The pipeline would build this motion UNet from the two itself, but then also keep the
    # adapter, whose weights the motion UNet holds copies of, and pipe.to() would move both
    # to the GPU. Built here, the 2D UNet and the adapter are dropped once copied.
    unet = UNetMotionModel.from_unet2d(
        load(UNet2DConditionModel, base, "unet", **weights), load(MotionAdapter, adapter, **weights)
    )
    pipe = AnimateDiffControlNetPipeline(
        vae=load(AutoencoderKL, base, "vae", **weights),
        text_encoder=load(CLIPTextModel, base, "text_encoder", **weights),
        tokenizer=load(CLIPTokenizer, base, "tokenizer"),
        unet=unet,
        motion_adapter=None,  # already inside `unet`
        controlnet=controlnets(spec, lambda source: load(ControlNetModel, source, **weights)),
        scheduler=load(DDIMScheduler, base, "scheduler", **DDIM_SETTINGS),
    )
    pipe.set_progress_bar_config(disable=True)  # progress goes out as protocol events instead
    return memory.apply(pipe, switches, device)  # the dtype was set per component at load


def load_image_pipeline(spec: ModelSpec, device: str, dtype: str | None = None, switches: memory.Memory | None = None,
                        video_pipe=None):
    """The image ControlNet pipeline (diffusers' StableDiffusionControlNetPipeline, one still) of the
    same base model and [[controls]] ControlNets, on the device with the [memory] switches.

    Its UNet is the base model's own 2D UNet (unet/): the AnimateDiff pipeline's UNetMotionModel
    is that UNet with motion modules added, and diffusers has no way back. `video_pipe`: an
    AnimateDiff pipeline already loaded (load_pipeline, e.g. by a warm server): its VAE, text
    encoder, tokenizer, ControlNets and scheduler config are shared instead of loaded again.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        DDIMScheduler,
        StableDiffusionControlNetPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTokenizer

    switches = switches or memory.Memory()
    dtype = getattr(torch, dtype or memory.dtype_name(device, switches))
    base = spec.source("base")
    weights = {"use_safetensors": True, "torch_dtype": dtype}
    unet = load_component(spec, UNet2DConditionModel, base, "unet", **weights)
    if video_pipe is not None:
        shared = {name: video_pipe.components[name] for name in ("vae", "text_encoder", "tokenizer", "controlnet")}
        shared["scheduler"] = DDIMScheduler.from_config(video_pipe.scheduler.config)
    else:
        shared = {
            "vae": load_component(spec, AutoencoderKL, base, "vae", **weights),
            "text_encoder": load_component(spec, CLIPTextModel, base, "text_encoder", **weights),
            "tokenizer": load_component(spec, CLIPTokenizer, base, "tokenizer"),
            "controlnet": controlnets(spec, lambda source: load_component(spec, ControlNetModel, source, **weights)),
            "scheduler": load_component(spec, DDIMScheduler, base, "scheduler", **DDIM_SETTINGS),
        }
    # No safety checker: the frames are disclosed as AI-generated, as the shot's own (none runs there).
    pipe = StableDiffusionControlNetPipeline(
        unet=unet, safety_checker=None, feature_extractor=None, requires_safety_checker=False, **shared
    )
    pipe.set_progress_bar_config(disable=True)  # progress goes out as protocol events instead
    return memory.apply(pipe, switches, device)


def controlnets(spec: ModelSpec, load):
    """The [[controls]]' ControlNets, in preset order, as one diffusers MultiControlNetModel.

    Always the multi model, one control too: the pipeline then takes the same lists (one
    conditioning video, scale, start and end per control) whatever the count, and
    MultiControlNetModel with one net computes what that net alone does (it scales and sums its nets'
    residuals; tested against a plain ControlNetModel in tests/inference/test_controls.py).
    """
    from diffusers import MultiControlNetModel

    return MultiControlNetModel([load(s) for s in spec.sources if s.role.startswith("controlnet:")])


def describe(spec: ModelSpec) -> dict:
    """Model identity for records and provenance: ids, revisions, content hashes."""
    if spec.smoke_test:
        root = Path(spec.source("base").location).parent
        return {
            "smoke_test": True,
            "weights": SMOKE_TEST,
            "tiny_model": str(root),
            "tiny_model_sha256": files.sha256_tree(root),
            # Every model loaded, each a folder of the tiny model standing for one repository.
            "sources": {source.role: {"id": source.location, "revision": None, "commit": None}
                        for source in spec.sources},
        }
    out = {"smoke_test": False, "weights": "pretrained", "sources": {}}
    for source in spec.sources:
        digests, commit = {}, None
        for filename in source.present_files() or []:
            path = source.find(filename)
            if source.directory is None:
                commit = path.parents[len(Path(filename).parts) - 1].name  # …/snapshots/<commit>/<filename>
            digests[filename] = file_sha256(path)
        out["sources"][source.role] = {
            "id": str(source.directory) if source.directory is not None else source.location,
            "revision": None if source.directory is not None else source.revision,
            "commit": commit,  # None for a local directory: its identity is its files' digests
            "sha256": digests,
        }
    return out


def file_sha256(path: Path) -> str:
    """A file's sha256: the cache's blob name when the file is a link to a blob named by its sha256
    (weights in a Hugging Face cache with symlinks), else hashed once and remembered (file_hashes)."""
    blob = path.resolve().name
    if path.is_symlink() and SHA256_NAME.fullmatch(blob):
        return blob
    return file_hashes.sha256(path)
