"""A shot as a farm job: an Open Job Description job template (specification 2023-09).

The template runs the same stages as Generate Final, each task a plain command of ours,
no daemon: `blender -b --python-expr …` for the scene stages and the composite,
`python -m inference …` for the backend. Steps, each depending on the one before:

    bake       one task:  the scene stages (build, trigger, bake), saved in shot.blend
    passes     frame chunks (TASK_CHUNKING's CHUNK[INT], CONTIGUOUS: "1-8", "9-16", …)
    control    one task:  the control maps, normalised over the whole shot
    generate   one task per window in `windows` mode, one task in `free_noise` mode
    composite  one task:  the sequencer edit and final.mp4

Every task is idempotent (stage stamps, window records): a finished task run again
changes nothing, a killed one is redone alone. Paths come from job parameters, so the
shot directory can be packed and moved (docs/farm.md).

Nothing here imports bpy: the template is data, written as YAML (or JSON by suffix).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .files import write_text_atomic

SPECIFICATION = "jobtemplate-2023-09"
# TASK_CHUNKING: the passes step hands each task a contiguous frame range (CHUNK[INT]).
# FEATURE_BUNDLE_1: lets a job parameter set the GPU amount (a format string in `min`).
EXTENSIONS = ("TASK_CHUNKING", "FEATURE_BUNDLE_1")
WINDOWS, FREE_NOISE = "windows", "free_noise"
# The preset copied into the shot directory when the export names one (the bake task reads it).
JOB_PRESET = "preset.toml"

# What every Blender task runs: Rubble's CLI from the RubbleRoot job parameter, which Blender's
# own Python would not find otherwise (it ignores $PYTHONPATH unless --python-use-system-env).
# The arguments after `--` are RubbleRoot, then the CLI's. Exits with the CLI's code.
BLENDER_EXPR = ("import sys; a = sys.argv[sys.argv.index('--') + 1:]; sys.path.insert(0, a[0]); "
                "from addon.cli import main; sys.exit(main(a[1:]))")


class FarmError(ValueError):
    """The job cannot be exported; the message says what to do next."""


@dataclass(frozen=True)
class JobSettings:
    """What the template is made from (the defaults of its job parameters)."""
    shot_dir: Path
    out: Path                       # where the template is written: relative PATH defaults start there
    name: str                       # the preset's name
    frame_start: int
    frame_end: int
    windows: int                    # windows of the generate step in `windows` mode
    mode: str = WINDOWS
    chunk_size: int = 8
    blender: str = "blender"
    backend_python: str = "python"
    rubble_root: Path = Path(__file__).resolve().parents[2]  # holds addon/ and inference/
    gpus: int = 1
    job_preset: bool = False        # the bake task passes <shot>/preset.toml


def window_count(frame_count: int, window: int, overlap: int) -> int:
    """How many windows inference/windows.py plan() makes: windows of `window` frames, each
    starting `window - overlap` after the last, plus one moved back to end on the last frame
    when they fall short. The add-on never imports the backend; a test checks both agree."""
    if frame_count <= window:
        return 1
    stride = window - overlap
    starts = len(range(0, frame_count - window + 1, stride))
    last_start = (starts - 1) * stride
    return starts + (last_start + window < frame_count)


def long_shot_mode(preset) -> str:
    """`[long_shot] mode` of the preset. Presets without the section (Rubble before it) generate
    windows independently, so they farm out as windows."""
    section = getattr(preset, "long_shot", None)
    return getattr(section, "mode", WINDOWS)


def settings_for(preset, shot_dir: Path, out: Path, **options: Any) -> JobSettings:
    model = preset.model
    return JobSettings(shot_dir=Path(shot_dir), out=Path(out), name=preset.name,
                       frame_start=preset.shot.frame_start, frame_end=preset.shot.frame_end,
                       windows=window_count(preset.frame_count, model.window, model.overlap),
                       mode=long_shot_mode(preset), **options)


def _path_parameter(name: str, target: Path, template_dir: Path, data_flow: str, description: str) -> dict:
    """A directory parameter. OpenJD allows only relative PATH defaults inside the template's
    folder (joined to it, so the template and the shot can move together); a folder elsewhere
    gets no default and the submitter names it (`-p NAME=…`)."""
    parameter = {"name": name, "type": "PATH", "objectType": "DIRECTORY", "dataFlow": data_flow}
    relative = Path(os.path.relpath(Path(target).resolve(), Path(template_dir).resolve()))
    if relative.parts[:1] != ("..",):
        parameter["default"] = relative.as_posix()
    parameter["description"] = description
    return parameter


def required_parameters(template: dict) -> list[str]:
    """The job parameters a submitter must set: those without a default."""
    return [p["name"] for p in template["parameterDefinitions"] if "default" not in p]


def _blender(*cli_args: str) -> dict:
    return {"command": "{{Param.Blender}}",
            "args": ["-b", "--python-exit-code", "1", "--python-expr", BLENDER_EXPR, "--",
                     "{{Param.RubbleRoot}}", *cli_args]}


def _backend(*args: str) -> dict:
    return {"command": "{{Param.BackendPython}}", "args": ["-m", "inference", *args]}


def _step(name: str, action: dict, after: str | None = None, parameters: list | None = None,
          description: str = "", host: dict | None = None) -> dict:
    step: dict[str, Any] = {"name": name}
    if description:
        step["description"] = description
    if parameters:
        step["parameterSpace"] = {"taskParameterDefinitions": parameters}
    if after:
        step["dependencies"] = [{"dependsOn": after}]
    if host:
        step["hostRequirements"] = host
    step["script"] = {"actions": {"onRun": action}}
    return step


def job_template(job: JobSettings) -> dict:
    if job.mode not in (WINDOWS, FREE_NOISE):
        raise FarmError(f"[long_shot] mode {job.mode!r} is not one of {WINDOWS!r}, {FREE_NOISE!r}.")
    if job.chunk_size < 1:
        raise FarmError(f"--chunk-size {job.chunk_size}: a chunk needs at least one frame.")
    template_dir = Path(job.out).resolve().parent
    shot = "{{Param.ShotDir}}"
    bake_args = ["shot", shot, "--stages", "build"]
    if job.job_preset:
        bake_args += ["--preset", f"{shot}/{JOB_PRESET}"]
    if job.mode == WINDOWS:
        generate = _step(
            "generate", _backend("generate", shot, "--windows", "{{Task.Param.Window}}"), after="control",
            parameters=[{"name": "Window", "type": "INT", "range": f"0-{job.windows - 1}"}],
            description="One task per window ([long_shot] mode = windows); the last to finish blends the frames.",
            host={"amounts": [{"name": "amount.worker.gpu", "min": "{{Param.GpuCount}}"}]})
    else:
        generate = _step(
            "generate", _backend("generate", shot), after="control",
            description="One task for the whole shot ([long_shot] mode = free_noise).",
            host={"amounts": [{"name": "amount.worker.gpu", "min": "{{Param.GpuCount}}"}]})
    return {
        "specificationVersion": SPECIFICATION,
        "extensions": list(EXTENSIONS),
        "name": f"Rubble: {job.name} ({Path(job.shot_dir).name})",
        "description": "Made by `rubble farm export`; docs/farm.md says how to submit and run it.",
        "parameterDefinitions": [
            _path_parameter("ShotDir", job.shot_dir, template_dir, "INOUT",
                            "The shot directory (a relative path starts at this template's folder)."),
            _path_parameter("RubbleRoot", job.rubble_root, template_dir, "IN",
                            "Rubble's source on the workers: the folder holding addon/ and inference/ "
                            "(a checkout, or the installed extension's folder)."),
            {"name": "Blender", "type": "STRING", "default": job.blender,
             "description": "The Blender executable (on $PATH, or a full path)."},
            {"name": "BackendPython", "type": "STRING", "default": job.backend_python,
             "description": "The backend's interpreter (the environment of requirements/inference.txt)."},
            {"name": "Frames", "type": "STRING", "default": f"{job.frame_start}-{job.frame_end}",
             "description": "Frames to render passes for, FIRST-LAST; generate needs every frame of the shot."},
            {"name": "ChunkSize", "type": "INT", "default": job.chunk_size, "minValue": 1,
             "description": "Frames per passes task."},
            {"name": "GpuCount", "type": "INT", "default": job.gpus, "minValue": 0,
             "description": "GPUs a generate task needs (0: runs on CPU workers too, slowly)."},
        ],
        "jobEnvironments": [{
            "name": "RubbleBackend",
            "description": "`python -m inference` finds the backend's package in RubbleRoot.",
            "variables": {"PYTHONPATH": "{{Param.RubbleRoot}}", "PYTHONUNBUFFERED": "1"},
        }],
        "steps": [
            _step("bake", _blender(*bake_args),
                  description="The scene stages, once; shot.blend carries the baked simulation."),
            _step("passes", _blender("shot", shot, "--stages", "passes", "--frames", "{{Task.Param.Frames}}"),
                  after="bake",
                  parameters=[{"name": "Frames", "type": "CHUNK[INT]", "range": "{{Param.Frames}}",
                               "chunks": {"defaultTaskCount": "{{Param.ChunkSize}}", "rangeConstraint": "CONTIGUOUS"}}],
                  description="Cycles passes, a chunk of frames per task."),
            _step("control", _backend("control", shot), after="passes",
                  description="Control maps, normalised once over the whole shot."),
            generate,
            _step("composite", _blender("shot", shot, "--stages", "composite"), after="generate",
                  description="The sequencer edit and final.mp4."),
        ],
    }


# --- writing ----------------------------------------------------------------------

def _yaml_lines(value: Any, indent: str) -> list[str]:
    """Block-style YAML for dicts, lists and scalars; every scalar is written as JSON, which is
    valid YAML (a double-quoted string is the same in both), so nothing needs YAML escaping."""
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{indent}{key}:")
                lines += _yaml_lines(item, indent + "  ")
            else:
                lines.append(f"{indent}{key}: {json.dumps(item, ensure_ascii=False)}")
        return lines
    if isinstance(value, list):
        lines = []
        for item in value:
            nested = _yaml_lines(item, indent + "  ") if isinstance(item, (dict, list)) and item else None
            if nested:
                lines.append(f"{indent}- {nested[0].lstrip()}")
                lines += nested[1:]
            else:
                lines.append(f"{indent}- {json.dumps(item, ensure_ascii=False)}")
        return lines
    return [f"{indent}{json.dumps(value, ensure_ascii=False)}"]


def dumps(template: dict, suffix: str = ".yaml") -> str:
    if suffix.lower() == ".json":
        return json.dumps(template, indent=2, ensure_ascii=False) + "\n"
    return "\n".join(_yaml_lines(template, "")) + "\n"


def write(template: dict, out: Path) -> Path:
    out = Path(out)
    write_text_atomic(out, dumps(template, out.suffix))
    return out
