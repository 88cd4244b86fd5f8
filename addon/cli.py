"""Headless entry point: the same stages as Generate Final, for `blender -b` and farms.

    blender -b -c rubble passes SHOT --frames 1-12                 (extension installed and enabled)
    blender -b --python run_rubble.py -- passes SHOT --frames 1-12 (only on disk)
    .venv-blender/bin/python -m addon.cli shot build/demo          (the bpy wheel)
    .venv-blender/bin/python -m addon.cli farm export build/demo --out build/demo/job.yaml

`shot` runs every stage that is missing; `<stage> SHOT` runs one (build, trigger and bake make
the scene together and skip when it is fresh); `farm export` writes the shot as an Open Job
Description template (docs/farm.md). Progress goes to stderr as plain lines, one per
step, for farm logs. Exit codes: 0 done, 1 refused or failed (the message says why), 2 a
command-line mistake, 130 cancelled or interrupted.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
import traceback
from pathlib import Path

from . import pipeline
from .core import VERSION, farm
from .core.backend import BackendError, find_backend_python
from .core.preset import DEFAULT_PRESET, Preset, PresetError, load_preset, preset_from_dict
from .core.shot_manifest import ShotManifestError, read_manifest


def parse_frames(text: str) -> tuple[int, int]:
    """`12` or `1-24`: a farm chunk, inclusive."""
    try:
        first, _, last = text.partition("-")
        result = int(first), int(last or first)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a frame range like 1-24") from None
    if result[1] < result[0]:
        raise argparse.ArgumentTypeError(f"{text!r}: the last frame is before the first")
    return result


STAGE_HELP = {
    "build": "make the scene: building, fracture, bonds (with trigger and bake: they run together)",
    "trigger": "add the triggers to the scene (with build and bake)",
    "bake": "bake the simulation into shot.blend (with build and trigger)",
    "passes": "render the EXR passes, all frames or a farm chunk (--frames)",
    "generate": "run the backend: control maps, then the generated frames",
    "composite": "lay the frames out in the sequencer and render final.mp4",
}


def _shot_arguments(parser: argparse.ArgumentParser, frames: bool) -> None:
    parser.add_argument("shot_dir", type=Path)
    parser.add_argument("--preset", type=Path,
                        help=f"preset TOML (default: the existing shot's own preset from shot.json, else {DEFAULT_PRESET})")
    parser.add_argument("--rebuild", action="store_true",
                        help="replace an existing shot whose shot/building/trigger differ from --preset")
    if frames:
        parser.add_argument("--frames", type=parse_frames, help="render passes only for this chunk, e.g. 1-12")
    parser.add_argument("--backend-python", default="", help="the backend's interpreter (else $RUBBLE_BACKEND_PYTHON)")
    parser.add_argument("--weights", choices=("auto", "pretrained", "tiny"), help="override the preset's model.weights")
    parser.add_argument("--tiny-model", type=Path, help="where the tiny smoke-test model lives (built if absent)")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rubble", description="Rubble: destruction shots, headless.")
    sub = parser.add_subparsers(dest="command", required=True)
    shot = sub.add_parser("shot", help="run the pipeline stages for one shot directory")
    _shot_arguments(shot, frames=True)
    shot.add_argument("--stages", default=",".join(pipeline.STAGES),
                      help="comma-separated subset of: %(default)s (scene stages always run, and skip when fresh)")
    for stage in pipeline.STAGES:
        one = sub.add_parser(stage, help=STAGE_HELP[stage], description=f"Rubble {stage}: {STAGE_HELP[stage]}.")
        _shot_arguments(one, frames=stage == "passes")
        one.set_defaults(stages=stage, frames=None)
    check = sub.add_parser("check-preset", help="validate a preset file and exit")
    check.add_argument("preset", type=Path)
    farm_parser = sub.add_parser("farm", help="the shot as a farm job (docs/farm.md)")
    farm_sub = farm_parser.add_subparsers(dest="farm_command", required=True)
    export = farm_sub.add_parser("export", help="write an Open Job Description job template for a shot")
    export.add_argument("shot_dir", type=Path)
    export.add_argument("--out", type=Path, required=True, help="the template to write (.yaml, or .json)")
    export.add_argument("--preset", type=Path,
                        help="preset TOML, copied into the shot directory for the bake task (default: the "
                             f"existing shot's own, else {DEFAULT_PRESET.name})")
    export.add_argument("--chunk-size", type=int, default=8, help="frames per passes task (default: %(default)s)")
    export.add_argument("--blender", default="blender", help="the Blender executable on the workers")
    export.add_argument("--backend-python", default="",
                        help="the backend's interpreter on the workers (default: this machine's)")
    export.add_argument("--gpus", type=int, default=1, help="GPUs a generate task needs (default: %(default)s)")
    return parser


_started = time.perf_counter()


def _log(message: str) -> None:
    """One plain line per step, with the seconds since the command started: a farm log reads
    top to bottom (no progress bars, no carriage returns)."""
    print(f"[rubble {time.perf_counter() - _started:7.1f}s] {message}", file=sys.stderr, flush=True)


def resolve_preset(shot_dir: Path, preset_path: Path | None, rebuild: bool) -> Preset:
    """The preset of a run. Once a shot exists, its shot.json is the truth: without --preset the
    run uses it, and a --preset that would define another scene is refused (a farm chunk with
    the wrong or no preset must never reset a shot other chunks are reading). Render, look and
    model changes are ordinary: they re-run the stages downstream of them."""
    if not (shot_dir / "shot.json").exists():
        return load_preset(preset_path or DEFAULT_PRESET)
    try:
        manifest = read_manifest(shot_dir)
    except ShotManifestError as exc:  # another Rubble's shot: refused, never overwritten
        raise pipeline.StageError(str(exc)) from None
    # check_local=False: the shot's local model folders need exist only where generate runs, not on
    # every farm node that renders its passes.
    stored = preset_from_dict(manifest.get("preset", {}), source=f"{shot_dir / 'shot.json'} [preset]",
                              check_local=False)
    if preset_path is None:
        return stored
    preset = load_preset(preset_path)
    differing = [s for s in pipeline.SCENE_SECTIONS if preset.section_hash(s) != stored.section_hash(s)]
    if differing and not rebuild:
        raise pipeline.StageError(
            f"{preset_path} differs from the shot in {shot_dir} in [{', '.join(differing)}], which define its "
            "scene. Leave out --preset to use the shot's own, or add --rebuild to replace the shot "
            "(its bake, passes and frames are redone).")
    return preset


def run_shot(args) -> int:
    import bpy
    bpy.context.preferences.filepaths.save_version = 0  # no shot.blend1 backups in a shot directory
    frames = f" frames {args.frames[0]}-{args.frames[1]}" if args.frames else ""
    _log(f"{args.command} {args.shot_dir}{frames} (Rubble {VERSION}, Blender {bpy.app.version_string})")
    preset = resolve_preset(args.shot_dir, args.preset, args.rebuild)
    job = pipeline.ShotJob(shot_dir=args.shot_dir, preset=preset,
                           stages=tuple(s.strip() for s in args.stages.split(",") if s.strip()),
                           frames=args.frames, backend_python=args.backend_python,
                           weights=args.weights, tiny_model=args.tiny_model, owns_session=True)
    last_line = None
    start = time.perf_counter()
    for progress in pipeline.run(job):
        if not progress.message:
            continue
        counter = f" {progress.done}/{progress.total}" if progress.total > 1 else ""
        line = f"{progress.stage}{counter}: {progress.message}"
        if line != last_line:
            _log(line)
            last_line = line
    timings = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in job.timings.items())
    _log(f"done in {time.perf_counter() - start:.1f}s ({timings}) -> {job.shot_dir}")
    return 0


def farm_export(args) -> int:
    """The job template. A shot not built yet gets its preset copied in (shot.json is the
    preset of a built one), so the shot directory carries everything the job reads."""
    shot_dir = args.shot_dir.resolve()
    preset = resolve_preset(shot_dir, args.preset, rebuild=False)
    job_preset = args.preset is not None or not (shot_dir / "shot.json").exists()
    try:
        python = args.backend_python or str(find_backend_python())
    except BackendError:
        python = "python"  # a job parameter: the submitter sets the workers' interpreter
    settings = farm.settings_for(preset, shot_dir, args.out, chunk_size=args.chunk_size, blender=args.blender,
                                 backend_python=python, gpus=args.gpus, job_preset=job_preset)
    template = farm.job_template(settings)
    if job_preset:
        shot_dir.mkdir(parents=True, exist_ok=True)
        source = args.preset or DEFAULT_PRESET
        if source.resolve() != (shot_dir / farm.JOB_PRESET).resolve():
            shutil.copyfile(source, shot_dir / farm.JOB_PRESET)
    path = farm.write(template, args.out)
    generate = f"{settings.windows} windows" if settings.mode == farm.WINDOWS else "one free_noise task"
    _log(f"wrote {path}: frames {settings.frame_start}-{settings.frame_end} in chunks of {settings.chunk_size}, "
         f"generate as {generate}")
    required = farm.required_parameters(template)
    if required:
        _log(f"submit it with {' '.join(f'-p {name}=…' for name in required)} (folders outside the template's "
             "folder have no default; docs/farm.md)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit code says how it ended (never raises, so `blender -c`,
    `--python` and `python -m` all end with the same code)."""
    global _started
    _started = time.perf_counter()
    try:
        args = make_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a command-line mistake (2); argparse printed why
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.command == "check-preset":
            preset = load_preset(args.preset)
            _log(f"{args.preset}: valid ({preset.name}, {preset.frame_count} frames)")
            return 0
        if args.command == "farm":
            return farm_export(args)
        return run_shot(args)
    except pipeline.Cancelled as exc:
        _log(f"cancelled: {exc}")
        return 130
    except KeyboardInterrupt:
        _log("interrupted; finished work was kept and the next run resumes from it")
        return 130
    # Typed errors carry what to do next; anything else is a bug and keeps its traceback.
    except (PresetError, BackendError, pipeline.StageError, farm.FarmError) as exc:
        _log(f"error: {exc}")
        return 1
    except Exception:
        traceback.print_exc()
        _log("error: Rubble stopped on an unexpected error (the traceback is above); please report it")
        return 1


def blender_main() -> None:
    """`blender -b --python run_rubble.py -- <command> ...`: the arguments after `--`, and the
    exit code handed to Blender (sys.exit ends Blender with it; a script that returns would
    let Blender exit 0 whatever happened)."""
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    sys.exit(main(argv))


if __name__ == "__main__":
    sys.exit(main())
