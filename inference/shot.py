"""shot.json: loading, version check and validation into typed, frozen settings (docs/contract.md)."""

import json
from dataclasses import dataclass
from pathlib import Path

from . import long_shot as long_shot_module
from . import memory as memory_module
from . import upscale_settings
from . import regenerate as regenerate_module
from .protocol import BackendError

SCHEMA_NAME = "rubble.shot"
SUPPORTED_MAJOR = 1
WEIGHTS_CHOICES = ("auto", "pretrained", "tiny")
DEFAULT_DECODE_CHUNK_SIZE = 8  # as addon/core/preset.py and presets/default.toml
DECODE_CHUNK_SIZE_RANGE = (1, 64)
NOISE_MODES = ("fresh", "warped")


@dataclass(frozen=True)
class Camera:
    matrix_world: tuple[tuple[float, ...], ...]  # 4x4, row-major, Blender's convention
    lens_mm: float
    clip_start: float
    clip_end: float


@dataclass(frozen=True)
class Look:
    prompt: str
    negative_prompt: str
    steps: int
    guidance_scale: float
    # 1.0: text-to-video; below: video-to-video from the clay, noised to this strength (video_to_video.py).
    strength: float = 1.0


# Control kinds (preset [[controls]]): depth and normal come from the passes, canny and lineart from
# detectors on the clay render (control.py, detectors.py). As addon/core/controls.py.
CONTROL_KINDS = ("depth", "normal", "canny", "lineart")
LEGACY_CONTROLNET = "lllyasviel/control_v11f1p_sd15_depth"  # shots exported with rubble.preset/1


@dataclass(frozen=True)
class Control:
    """One ControlNet of the preset's [[controls]], fed its kind's control maps."""

    kind: str
    model: str  # Hugging Face id, or a directory on this machine
    revision: str
    weight: float  # controlnet_conditioning_scale
    guidance_start: float  # fraction of the steps it acts over
    guidance_end: float


@dataclass(frozen=True)
class ModelSettings:
    family: str
    weights: str
    base: str
    base_revision: str
    motion_adapter: str
    motion_adapter_revision: str
    controls: tuple[Control, ...]  # preset [[controls]], in order: one ControlNet each
    width: int
    height: int
    window: int
    overlap: int
    decode_chunk_size: int  # frames the VAE decodes at once: peak memory, not the frames


@dataclass(frozen=True)
class NoiseSettings:
    """The preset's [noise] table (inference/noise_warp.py); a shot without one gets today's fresh noise."""

    mode: str = "fresh"  # "fresh": i.i.d. per frame; "warped": carried along the flow
    strength: float = 1.0  # share of the warped noise's variance, the rest fresh
    motion_lora: str = ""  # LoRA for the motion adapter (a local file/directory or a cached hub id)
    motion_lora_revision: str = "main"


@dataclass(frozen=True)
class Shot:
    directory: Path
    frame_start: int
    frame_end: int
    fps: float
    resolution: tuple[int, int]  # width, height
    seed: int
    passes: str  # pattern relative to the shot dir, e.g. "passes/{frame:04d}.exr"
    roles: dict[int, str]
    fragments: frozenset[int]  # IndexOB values of the fracture's fragments (16 and up)
    moved: dict[int, frozenset[int]]  # frame -> fragments that count as debris in it
    cameras: dict[int, Camera]
    look: Look
    model: ModelSettings
    noise: NoiseSettings = NoiseSettings()
    long_shot: long_shot_module.LongShot = long_shot_module.LongShot()  # preset [long_shot]
    memory: memory_module.Memory = memory_module.Memory()  # preset [memory]
    upscale: upscale_settings.Upscale = upscale_settings.Upscale()  # preset [upscale]
    regenerate: regenerate_module.Regenerate = regenerate_module.Regenerate()  # preset [regenerate]

    @property
    def frames(self) -> list[int]:
        return list(range(self.frame_start, self.frame_end + 1))

    def pass_path(self, frame: int) -> Path:
        return self.directory / self.passes.format(frame=frame)


def load(shot_dir: Path) -> Shot:
    shot_dir = Path(shot_dir)
    path = shot_dir / "shot.json"
    fix = "Export the shot again from Blender (Rubble > Passes), or pass the shot directory that holds shot.json."
    if not path.is_file():
        raise BackendError("missing_shot", f"No shot.json in {shot_dir}.", fix)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BackendError("invalid_shot", f"{path} is not valid JSON: {exc}.", fix) from exc
    _check_schema(path, data.get("schema"))
    try:
        return _parse(shot_dir, data)
    except (KeyError, TypeError, ValueError) as exc:
        raise BackendError("invalid_shot", f"{path} is malformed: {type(exc).__name__}: {exc}.", fix) from exc


def _check_schema(path: Path, schema: object) -> None:
    supported = f"{SCHEMA_NAME}/{SUPPORTED_MAJOR}"
    name, _, version = str(schema).partition("/")
    major = version.split(".")[0]
    if name != SCHEMA_NAME or not major.isdigit():
        raise BackendError(
            "unsupported_schema",
            f"{path} has schema {schema!r}; this backend reads {supported!r}.",
            "Check that the path points at a Rubble shot directory.",
        )
    if int(major) != SUPPORTED_MAJOR:
        newer = int(major) > SUPPORTED_MAJOR
        raise BackendError(
            "unsupported_schema",
            f"{path} has schema {schema!r}, but this backend supports only {supported!r}.",
            "Update the Rubble backend to match the add-on." if newer else "Re-export the shot with this add-on version.",
        )


def _parse(shot_dir: Path, data: dict) -> Shot:
    frame_start, frame_end = int(data["frame_start"]), int(data["frame_end"])
    if frame_end < frame_start:
        raise ValueError(f"frame_end {frame_end} is before frame_start {frame_start}")
    width, height = (int(v) for v in data["resolution"])
    cameras = {int(frame): _camera(cam) for frame, cam in data["camera"].items()}
    missing = [f for f in range(frame_start, frame_end + 1) if f not in cameras]
    if missing:
        raise BackendError(
            "missing_camera",
            f"{shot_dir / 'shot.json'} has no camera for frames {_ranges(missing)} (its \"camera\" table "
            f"must hold every frame {frame_start}-{frame_end}).",
            "Export the shot again from Blender (Rubble > Passes) so that every frame's camera is recorded.",
        )
    preset = data["preset"]
    look, model = preset["look"], preset["model"]
    settings = model_settings(model, preset_controls(preset))
    return Shot(
        directory=shot_dir,
        frame_start=frame_start,
        frame_end=frame_end,
        fps=float(data["fps"]),
        resolution=(width, height),
        seed=int(data["seed"]),
        passes=str(data["passes"]),
        roles={int(k): str(v) for k, v in data.get("roles", {}).items()},
        fragments=frozenset(int(k) for k in data.get("fragments", {})),
        moved={int(f): frozenset(map(int, ids)) for f, ids in data.get("moved", {}).items()},
        cameras=cameras,
        look=look_settings(look),
        model=settings,
        noise=noise_settings(preset.get("noise", {})),
        long_shot=long_shot_module.settings(preset.get("long_shot")),
        memory=memory_module.settings(preset.get("memory")),
        upscale=upscale_settings.settings(preset.get("upscale")),
        regenerate=regenerate_module.settings(preset.get("regenerate")),
    )


def _ranges(frames: list[int]) -> str:
    """[1, 2, 3, 7] -> "1-3, 7"."""
    spans = []
    for f in frames:
        if spans and f == spans[-1][1] + 1:
            spans[-1][1] = f
        else:
            spans.append([f, f])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _camera(cam: dict) -> Camera:
    matrix = tuple(tuple(float(v) for v in row) for row in cam["matrix_world"])
    if len(matrix) != 4 or any(len(row) != 4 for row in matrix):
        raise ValueError("camera matrix_world must be 4x4")
    return Camera(matrix, float(cam["lens_mm"]), float(cam["clip_start"]), float(cam["clip_end"]))


def preset_controls(preset: dict) -> list[dict]:
    """The resolved preset's [[controls]]; a shot exported with a rubble.preset/1 preset has none, and
    its one depth ControlNet ([model] controlnet, [look] controlnet_scale) is read as one control,
    as addon/core/migrations.py migrates it."""
    if "controls" in preset:
        return preset["controls"]
    model, look = preset["model"], preset.get("look", {})
    return [{"kind": "depth", "model": model.get("controlnet", LEGACY_CONTROLNET),
             "revision": model.get("controlnet_revision", "main"), "weight": look.get("controlnet_scale", 1.0),
             "guidance_start": 0.0, "guidance_end": 1.0}]


def _control(table: dict) -> Control:
    control = Control(
        kind=str(table["kind"]),
        model=str(table["model"]),
        revision=str(table.get("revision", "main")),
        weight=float(table.get("weight", 1.0)),
        guidance_start=float(table.get("guidance_start", 0.0)),
        guidance_end=float(table.get("guidance_end", 1.0)),
    )
    if control.kind not in CONTROL_KINDS:
        raise ValueError(f"control kind {control.kind!r} is not one of {CONTROL_KINDS}")
    if not 0.0 <= control.guidance_start < control.guidance_end <= 1.0:
        raise ValueError(f"control {control.kind}: guidance_start {control.guidance_start} and guidance_end "
                         f"{control.guidance_end} must satisfy 0 <= start < end <= 1")
    return control


def model_settings(model: dict, controls: list[dict]) -> ModelSettings:
    """The preset's [model] table and [[controls]] (preset_controls), validated."""
    settings = ModelSettings(
        family=str(model["family"]),
        weights=str(model["weights"]),
        base=str(model["base"]),
        base_revision=str(model["base_revision"]),
        # AnimateDiff's; a family without one (wan-vace) leaves them out of its presets.
        motion_adapter=str(model.get("motion_adapter", "")),
        motion_adapter_revision=str(model.get("motion_adapter_revision", "")),
        controls=tuple(_control(c) for c in controls),
        width=int(model["width"]),
        height=int(model["height"]),
        window=int(model["window"]),
        overlap=int(model["overlap"]),
        # Shots exported before the key existed decode 8 frames at a time, the preset's default.
        decode_chunk_size=int(model.get("decode_chunk_size", DEFAULT_DECODE_CHUNK_SIZE)),
    )
    _check_model(settings)
    return settings


def look_settings(look: dict) -> Look:
    """The preset's [look] table, validated (shots exported before `strength` existed: 1.0, text-to-video)."""
    settings = Look(
        prompt=str(look["prompt"]),
        negative_prompt=str(look.get("negative_prompt", "")),
        steps=int(look["steps"]),
        guidance_scale=float(look["guidance_scale"]),
        strength=float(look.get("strength", 1.0)),
    )
    if not 0.0 < settings.strength <= 1.0:  # also refuses NaN
        raise ValueError(f"look strength {settings.strength} must be above 0 and at most 1")
    return settings


def noise_settings(noise: dict) -> NoiseSettings:
    """The preset's [noise] table, validated (missing keys take the defaults)."""
    defaults = NoiseSettings()
    settings = NoiseSettings(
        mode=str(noise.get("mode", defaults.mode)),
        strength=float(noise.get("strength", defaults.strength)),
        motion_lora=str(noise.get("motion_lora", defaults.motion_lora)),
        motion_lora_revision=str(noise.get("motion_lora_revision", defaults.motion_lora_revision)),
    )
    if settings.mode not in NOISE_MODES:
        raise ValueError(f"noise mode {settings.mode!r} must be one of {NOISE_MODES}")
    if not 0.0 <= settings.strength <= 1.0:
        raise ValueError(f"noise strength {settings.strength} must be between 0 and 1")
    return settings


def _check_model(model: ModelSettings) -> None:
    from .families import names

    if model.family not in names():
        raise ValueError(f"model family {model.family!r} is not known (known: {', '.join(names())})")
    if model.weights not in WEIGHTS_CHOICES:
        raise ValueError(f"model weights {model.weights!r} must be one of {WEIGHTS_CHOICES}")
    # The VAE downsamples by 8 and the UNet by 2 more per level; SD1.5 pipelines want multiples of 8.
    if model.width % 8 or model.height % 8:
        raise ValueError(f"model width/height {model.width}x{model.height} must be multiples of 8")
    low, high = DECODE_CHUNK_SIZE_RANGE
    if not low <= model.decode_chunk_size <= high:
        raise ValueError(f"model decode_chunk_size {model.decode_chunk_size} must be between {low} and {high}")
    kinds = [c.kind for c in model.controls]
    if not kinds or len(set(kinds)) != len(kinds):
        raise ValueError(f"controls {kinds}: list one to {len(CONTROL_KINDS)} controls, each kind once")
    if not 0 <= model.overlap < model.window:
        raise ValueError(f"overlap {model.overlap} must be at least 0 and less than window {model.window}")
