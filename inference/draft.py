"""The draft tier (preset `[draft]`): the whole shot in a few steps, at a reduced size, to judge
timing and composition before a final (issue 22 item 2).

A draft is the final's generation with three things changed: the motion adapter is a few-step
consistency model (AnimateLCM, Wang et al. 2024, arXiv:2402.00769) with its optional LCM LoRA on the
base, the scheduler is diffusers' LCMScheduler (built as diffusers' AnimateDiff docs do for
AnimateLCM: `LCMScheduler.from_config(pipe.scheduler.config, beta_schedule="linear")`), and the
size is `[draft] scale` of the generation size. The controls, the seed, the noise and the window
planner are the final's, so the draft predicts the final's timing and composition.

Everything it writes lies under drafts/ (drafts/windows/NNN/, drafts/frames/NNNN.png,
drafts/provenance.json with "kind": "draft"); frames/, windows/ and provenance.json are never
touched. Windows resume and cancel exactly as generate's do (the family's own run, pointed at
drafts/).
"""

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from . import __version__, files, long_shot, models, protocol, tiny_model, windows
from .protocol import BackendError
from .shot import Shot

FOLDER = "drafts"
SECTION = "draft"  # the preset table (FOLDER is where drafts are written)
KIND = "draft"
FAMILIES = ("animatediff-controlnet",)  # the families whose adapter AnimateLCM replaces
STEPS_RANGE = (4, 8)  # AnimateLCM's range: good motion from 4 steps (its model card and paper)
GUIDANCE_RANGE = (1.0, 2.0)  # LCM distils classifier-free guidance in: 1-2 (diffusers' AnimateLCM docs: 1.5)
LORA_SCALE_RANGE = (0.0, 1.0)
SCALE_RANGE = (0.25, 1.0)
MIN_SIZE = 32  # pixels per side: 4 latent pixels, as small as a draft is worth looking at


@dataclass(frozen=True)
class Draft:
    """The preset's [draft] table; the defaults are addon/core/draft.py's (presets/README.md: the ids)."""

    motion_adapter: str = "wangfuyun/AnimateLCM"
    motion_adapter_revision: str = "6cdc714205bbc04c3b2031ee63725cd6e54dbe56"  # presets/README.md
    lora: str = "wangfuyun/AnimateLCM"  # LCM LoRA for the base model; "" = none
    lora_revision: str = "6cdc714205bbc04c3b2031ee63725cd6e54dbe56"
    lora_weight_name: str = "AnimateLCM_sd15_t2v_lora.safetensors"
    lora_scale: float = 0.8  # diffusers' AnimateLCM docs: set_adapters(["lcm-lora"], [0.8])
    steps: int = 6
    guidance_scale: float = 1.5
    scale: float = 0.5


def settings(shot: Shot) -> Draft:
    """The [draft] table of the shot's preset (shot.json), validated; absent: the defaults."""
    path = shot.directory / "shot.json"
    table = json.loads(path.read_text(encoding="utf-8"))["preset"].get(SECTION) or {}
    try:
        return parse(table)
    except (TypeError, ValueError) as exc:
        raise BackendError(
            "invalid_shot",
            f"{path}: the preset's [draft] table is invalid: {exc}.",
            "Fix [draft] in the preset (presets/default.toml has every key) and export the shot again.",
        ) from exc


def parse(table: dict) -> Draft:
    defaults = asdict(Draft())
    unknown = set(table) - set(defaults)
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)} (known: {', '.join(defaults)})")
    values = {**defaults, **table}
    for key, default in defaults.items():
        value = values[key]
        expected = float if isinstance(default, float) else type(default)
        if isinstance(value, bool) or not isinstance(value, (int, float) if expected is float else expected):
            raise ValueError(f"{key} must be of type {expected.__name__}, got {value!r}")
        if expected is float and not np.isfinite(value):
            raise ValueError(f"{key} {value} is not a finite number")
    draft = Draft(**{k: float(v) if isinstance(defaults[k], float) else v for k, v in values.items()})
    for key, (low, high) in (("steps", STEPS_RANGE), ("guidance_scale", GUIDANCE_RANGE),
                             ("lora_scale", LORA_SCALE_RANGE), ("scale", SCALE_RANGE)):
        if not low <= getattr(draft, key) <= high:
            raise ValueError(f"{key} {getattr(draft, key)} must be between {low} and {high}")
    if not draft.motion_adapter:
        raise ValueError("motion_adapter must name the few-step motion adapter (e.g. wangfuyun/AnimateLCM)")
    return draft


def size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The draft's generation size: `scale` of the final's, rounded down to a multiple of 8 (the
    VAE's factor), at least MIN_SIZE. The same rule as addon/core/draft.py."""
    return tuple(max(MIN_SIZE, int(side * scale) // 8 * 8) for side in (width, height))


def draft_shot(shot: Shot, draft: Draft) -> Shot:
    """The shot as the draft generates it: the draft's adapter, steps, guidance and size; all else the final's."""
    width, height = size(shot.model.width, shot.model.height, draft.scale)
    model = replace(shot.model, width=width, height=height, motion_adapter=draft.motion_adapter,
                    motion_adapter_revision=draft.motion_adapter_revision)
    look = replace(shot.look, steps=draft.steps, guidance_scale=draft.guidance_scale)
    return replace(shot, model=model, look=look)


def check_family(shot: Shot) -> None:
    if shot.model.family not in FAMILIES:
        raise BackendError(
            "draft_unsupported",
            f"Drafts need an AnimateDiff motion adapter to replace with AnimateLCM; [model] family = "
            f"{shot.model.family!r} has none.",
            f"Use a preview of one frame instead, or a preset of family {', '.join(FAMILIES)}.",
        )


def spec(shot: Shot, weights: str, tiny_location: Path) -> models.ModelSpec:
    """The draft's models: the final's base and ControlNets with the draft adapter (`shot` is draft_shot's).
    The tiny model's stand-in for AnimateLCM is its second adapter (tiny_model.DRAFT_MOTION_ADAPTER)."""
    resolved = models.resolve(shot.model, weights, tiny_location)
    if not resolved.smoke_test:
        return resolved
    adapter = models.Source("motion_adapter", str(tiny_location / tiny_model.DRAFT_MOTION_ADAPTER), None,
                            models.SINGLE_MODEL_FILES)
    return replace(resolved, sources=tuple(adapter if s.role == "motion_adapter" else s for s in resolved.sources))


def fetch_sources(family: str, draft: Draft) -> tuple[models.Source, ...]:
    """The draft tier's repositories for `fetch` and `doctor`, for a family that drafts: the few-step
    motion adapter and, unless [draft] lora is "", the LCM LoRA file."""
    if family not in FAMILIES:
        return ()
    sources = [models.Source("draft_motion_adapter", draft.motion_adapter, draft.motion_adapter_revision,
                             models.SINGLE_MODEL_FILES, (),
                             ("[draft] motion_adapter", "[draft] motion_adapter_revision"))]
    if draft.lora and not Path(draft.lora).expanduser().is_file():
        sources.append(models.Source("draft_lora", draft.lora, draft.lora_revision, (((draft.lora_weight_name,),),),
                                     (), ("[draft] lora", "[draft] lora_revision")))
    return tuple(sources)


def lora_file(draft: Draft, model_spec: models.ModelSpec) -> Path | None:
    """The LCM LoRA on this machine (a file, a folder holding lora_weight_name, or the hub id in the
    Hugging Face cache), None when [draft] lora is "" or the base is the tiny model (it has no LoRA
    of its shape). Never downloads."""
    if not draft.lora or model_spec.smoke_test:
        return None
    location = Path(draft.lora).expanduser()
    if location.is_file():
        return location.resolve()
    if location.is_dir():
        found = location / draft.lora_weight_name
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(draft.lora, draft.lora_weight_name, revision=draft.lora_revision)
        found = Path(cached) if isinstance(cached, str) else None
    if found is None or not found.is_file():
        raise BackendError(
            "missing_weights",
            f"[draft] lora = {draft.lora!r}: {draft.lora_weight_name} is not on this machine.",
            "Run `python -m inference fetch SHOT` on a machine with network access (it fetches the draft's "
            "adapter and LoRA with the preset's models), or set [draft] lora = \"\" to draft without the LCM LoRA.",
        )
    return found


def load_pipeline(model_spec: models.ModelSpec, device: str, shot: Shot, lora: Path | None, lora_scale: float):
    """The family's pipeline (models.load_pipeline) with the draft adapter, LCMScheduler and the LCM LoRA."""
    from . import memory

    pipe = models.load_pipeline(model_spec, device, memory.dtype_name(device, shot.memory), shot.memory)
    use_lcm_scheduler(pipe)
    if lora is not None:
        try:
            pipe.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name="lcm", local_files_only=True)
            pipe.set_adapters(["lcm"], [lora_scale])
        except (OSError, ValueError) as exc:
            raise BackendError(
                "bad_lora",
                f"Could not load the LCM LoRA {lora}: {exc}",
                "diffusers needs the peft package for LoRAs; check that the file is an LCM LoRA for SD1.5, or set "
                "[draft] lora = \"\".",
            ) from exc
    return pipe


def use_lcm_scheduler(pipe) -> None:
    """LCMScheduler from the base's scheduler config with linear betas, as diffusers' AnimateLCM docs."""
    from diffusers import LCMScheduler

    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config, beta_schedule="linear")


def forget_other_settings(shot: Shot, draft: Draft, lora: Path | None) -> None:
    """Draft windows made with other [draft] settings are removed: the window records key the adapter,
    steps, guidance and size, but not the LoRA or its scale, which change the frames too."""
    import shutil

    current = {**asdict(draft), "lora_used": str(lora) if lora else None}
    path = records_root(shot) / "settings.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        saved = None
    if saved != current:
        shutil.rmtree(records_root(shot) / "windows", ignore_errors=True)
        files.write_json(path, current)


def records_root(shot: Shot) -> Path:
    return shot.directory / FOLDER


def frame_path(shot: Shot, frame: int) -> Path:
    return records_root(shot) / "frames" / f"{frame:04d}.png"


def blend(shot: Shot, generated: Shot) -> list[Path]:
    """drafts/windows -> drafts/frames at the shot's resolution (as blend.run does for the final: the
    same cross-fade weights, so the sequencer shows a draft the size of the final)."""
    root = records_root(shot)
    plan = long_shot.plan(generated)
    missing = [w.index for w in plan if windows.read_record(root, w) is None]
    if missing:
        raise BackendError("windows_missing", f"Draft windows {missing} are not generated yet.",
                           f"Run: python -m inference draft {shot.directory}")
    weights = {w.index: windows.weights(w, plan) for w in plan}
    text = {"Disclaimer": "AI-generated", "Software": f"Rubble {__version__}", "Comment": "draft"}
    written = []
    for offset, frame in enumerate(shot.frames):
        total = 0.0
        for window in plan:
            if window.start <= offset < window.stop:
                pixels = np.asarray(Image.open(windows.frame_path(root, window, frame)), dtype=np.float64)
                total = total + pixels * weights[window.index][offset - window.start]
        image = Image.fromarray(np.round(total).astype(np.uint8))
        if image.size != shot.resolution:
            image = image.resize(shot.resolution, Image.Resampling.LANCZOS)
        files.write_png(frame_path(shot, frame), image, text)
        written.append(frame_path(shot, frame))
        protocol.progress("blend", offset + 1, len(shot.frames), f"draft frame {frame}")
    return written


def write_provenance(shot: Shot, generated: Shot, draft: Draft, description: dict, lora: Path | None,
                     scheduler: str, timings: dict) -> Path:
    """drafts/provenance.json: "kind": "draft", what made it, and the window records it was blended from."""
    import platform
    from importlib import metadata

    from . import provenance

    root = records_root(shot)
    records = [windows.read_record(root, w) for w in long_shot.plan(generated)]
    data = {
        "schema": provenance.SCHEMA,
        "kind": KIND,
        "disclosure": provenance.DISCLOSURE,
        "smoke_test": description["smoke_test"],
        "weights": description["weights"],
        "draft": {**asdict(draft), "lora_used": str(lora) if lora else None, "scheduler": scheduler,
                  "size": [generated.model.width, generated.model.height]},
        "model": {"family": shot.model.family, "base": shot.model.base, "base_revision": shot.model.base_revision,
                  "motion_adapter": draft.motion_adapter, "motion_adapter_revision": draft.motion_adapter_revision,
                  "used": description},
        "controls": provenance.controls(generated, description),
        "seed": shot.seed,
        "look": asdict(generated.look),
        "frames": [shot.frame_start, shot.frame_end],
        "versions": {"rubble": __version__, "python": platform.python_version(),
                     **{name: metadata.version(name) for name in ("torch", "diffusers", "transformers")}},
        "windows": [{"index": r["index"], "frames": r["frames"], "inputs_sha256": r["inputs_sha256"],
                     "device": r["device"], "seconds": r["seconds"]} for r in records if r],
        "long_shot": long_shot.record(generated, generated.memory.split_inference),
        "timings": timings,
    }
    path = root / "provenance.json"
    files.write_json(path, data)
    return path
