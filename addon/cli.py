"""Headless entry point: the same stages as Generate Final, for `blender -b` and farms.

    blender -b --python run_rubble.py -- shot build/demo --preset presets/default.toml
    .venv-blender/bin/python -m addon.cli shot build/demo        (the bpy wheel)
    blender -b -c rubble shot build/demo                           (extension installed)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import pipeline
from .core.backend import BackendError
from .core.preset import DEFAULT_PRESET, PresetError, load_preset


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


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rubble", description="Rubble: destruction shots, headless.")
    sub = parser.add_subparsers(dest="command", required=True)
    shot = sub.add_parser("shot", help="run the pipeline stages for one shot directory")
    shot.add_argument("shot_dir", type=Path)
    shot.add_argument("--preset", type=Path, default=DEFAULT_PRESET, help="preset TOML (default: %(default)s)")
    shot.add_argument("--stages", default=",".join(pipeline.STAGES),
                      help="comma-separated subset of: %(default)s (scene stages always run, and skip when fresh)")
    shot.add_argument("--frames", type=parse_frames, help="render passes only for this chunk, e.g. 1-12")
    shot.add_argument("--backend-python", default="", help="the backend's interpreter (else $RUBBLE_BACKEND_PYTHON)")
    shot.add_argument("--weights", choices=("auto", "pretrained", "tiny"), help="override the preset's model.weights")
    shot.add_argument("--tiny-model", type=Path, help="where the tiny smoke-test model lives (built if absent)")
    check = sub.add_parser("check-preset", help="validate a preset file and exit")
    check.add_argument("preset", type=Path)
    return parser


def _log(message: str) -> None:
    print(f"[rubble] {message}", file=sys.stderr, flush=True)


def run_shot(args) -> int:
    import bpy
    bpy.context.preferences.filepaths.save_version = 0  # no shot.blend1 backups in a shot directory
    preset = load_preset(args.preset)
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


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        if args.command == "check-preset":
            preset = load_preset(args.preset)
            _log(f"{args.preset}: valid ({preset.name}, {preset.frame_count} frames)")
            return 0
        return run_shot(args)
    except pipeline.Cancelled as exc:
        _log(f"cancelled: {exc}")
        return 130
    # Typed errors carry what to do next; anything else is a bug and keeps its traceback.
    except (PresetError, BackendError, pipeline.StageError) as exc:
        _log(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
