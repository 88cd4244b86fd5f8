"""Command line: `python -m inference <command>` (docs/contract.md for what each one reads and writes).

Each command is a short list of named, timed stages. Heavy imports (torch, diffusers) happen
inside the stages that need them, so `--help` and `validate` return at once.
"""

import argparse
import errno
import shutil
import sys
import time
import tomllib
from pathlib import Path

from . import protocol
from .protocol import BackendError

# Where the add-on's preset lives when `doctor` runs without a shot.
DEFAULT_PRESET = Path(__file__).resolve().parent.parent / "presets" / "default.toml"


def main(argv: list[str] | None = None) -> int:
    # stdout belongs to the event stream; --help text and libraries' stray prints go to stderr.
    sys.stdout = sys.stderr
    args = _parser().parse_args(argv)  # exits 2 on a bad command line
    try:
        return args.command(args)
    except BackendError as exc:
        protocol.error(exc.code, exc.message, exc.hint, exc)
        return protocol.EXIT_ERROR
    except OSError as exc:
        full = _disk_full(getattr(args, "shot", None), exc)
        if full is None:
            _internal_error(exc)
        else:
            protocol.error("disk_full", full, "Free some space on that disk (an older shot's control/, windows/ or "
                           "passes/ are the large folders) or move the shot to a larger disk, then run again: "
                           "what was finished is kept.", exc)
        return protocol.EXIT_ERROR
    except Exception as exc:  # the user still gets one error event with the traceback
        _internal_error(exc)
        return protocol.EXIT_ERROR


def _internal_error(exc: BaseException) -> None:
    protocol.error(
        "internal",
        f"{type(exc).__name__}: {exc}",
        "This is a bug in the Rubble backend; please report it with the traceback.",
        exc,
    )


# Below this much free space an OSError is taken for a full disk: numpy's tofile reports a short
# write ("N requested and M written") without an errno.
FULL_DISK_BYTES = 64 << 20


def _disk_full(shot: Path | None, exc: OSError) -> str | None:
    """The message for a write that failed on a full disk, else None."""
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT, None):
        return None
    where = shot if shot is not None and shot.exists() else Path.cwd()
    free = shutil.disk_usage(where).free
    if exc.errno is None and free >= FULL_DISK_BYTES:
        return None
    return f"The disk holding {where} is full ({free / 1e6:.0f} MB free): {exc}."


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inference", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name, function, help_text, shot=True):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if shot:
            sub.add_argument("shot", type=Path, help="shot directory (holds shot.json)")
        sub.set_defaults(command=function)
        return sub

    sub = command("validate", validate, "check shot.json and list the frames and windows")
    sub.add_argument("--check-weights", action="store_true",
                     help="also say whether the preset's real weights are on this machine (no torch import)")
    sub = command("control", derive_control, "derive the control maps from the passes")
    sub.add_argument("--frames", type=_frame_range, help="only these frames, e.g. 5-12 (normalisation stays shot-wide)")
    sub = command("generate", generate, "control maps (if needed), windows, blend, upscale, contact sheet")
    sub.add_argument("--weights", choices=("auto", "pretrained", "tiny"), help="override the preset's [model] weights")
    sub.add_argument("--tiny-model", help="tiny model directory (default: $RUBBLE_TINY_MODEL or ~/.cache/rubble/tiny-model)")
    sub.add_argument("--windows", type=_indices, help="only these windows, e.g. 0,2 (a farm task); blend waits for all")
    sub.add_argument("--device", choices=("cuda", "mps", "cpu"), help="default: cuda, else mps, else cpu (the first present)")
    command("blend", blend_windows, "cross-fade finished windows into blended/ (the generation size)")
    sub = command("upscale", upscale_frames, "bring blended/ to the shot's resolution in frames/ (preset [upscale])")
    sub.add_argument("--weights", choices=("auto", "pretrained", "tiny"), help="override the preset's [model] weights")
    sub.add_argument("--tiny-model", help="tiny model directory; the tiny upscaler lives beside it")
    sub.add_argument("--device", choices=("cuda", "mps", "cpu"), help="default: cuda, else mps, else cpu (the first present)")
    sub = command("preview", preview, "one still of one frame with the shot's look, into previews/")
    sub.add_argument("--frame", type=int, required=True, help="the shot frame to preview")
    _model_options(sub)
    sub = command("draft", draft, "a few-step draft of the whole shot at a reduced size into drafts/ (preset [draft])")
    _model_options(sub)
    sub = command("estimate", estimate, "predict the shot's time and peak memory from a short calibration on this device")
    _model_options(sub)
    sub.add_argument("--recalibrate", action="store_true", help="calibrate again even when a calibration is cached")
    command("noise", noise, "write noise/latents.npy: the initial latents generate will use")
    command("contact-sheet", contact_sheet, "write contact_sheet.png")
    sub = command("tiny-model", tiny_model, "build the tiny random-weight smoke-test model", shot=False)
    sub.add_argument("directory", type=Path)
    sub = command("fetch", fetch, "download the preset's model files (safetensors, configs) into the Hugging Face cache",
                  shot=False)
    which = sub.add_mutually_exclusive_group()
    which.add_argument("shot", type=Path, nargs="?", help="shot directory: fetch its preset's models")
    which.add_argument("--preset", type=Path, help="a preset .toml instead of a shot (default: presets/default.toml)")
    # fetch.VARIANTS, spelled here: importing fetch.py imports PIL, and a broken environment's
    # `doctor` must still parse its command line (tests/inference/test_fetch.py checks they agree).
    sub.add_argument("--no-draft", dest="draft", action="store_false",
                     help="leave out the draft tier's models ([draft]: AnimateLCM and its LoRA), fetched by default")
    sub.add_argument("--variant", choices=("fp16", "full"), default="fp16",
                     help="fp16 (default): diffusers' half-size fp16 weights where the repository has them; "
                          "full: the full-precision files")
    sub = command("serve", serve, "a warm backend: keep models loaded and run commands sent by the add-on "
                  "(127.0.0.1 only, token in the state file)", shot=False)
    sub.add_argument("--port", type=int, default=0, help="default: a free port the system picks")
    sub.add_argument("--host", default="127.0.0.1", help="only 127.0.0.1 is accepted")
    sub.add_argument("--state-file", type=Path,
                     help="where to write port, pid and token (default: $RUBBLE_SERVE_FILE or ~/.cache/rubble/serve.json)")
    sub = command("doctor", doctor, "report versions, GPU, and which weights are on this machine", shot=False)
    sub.add_argument("--shot", type=Path, help="check this shot's preset instead of presets/default.toml")
    sub.add_argument("--tiny-model", help="tiny model directory to look for")
    return parser


def _model_options(sub) -> None:
    """generate's --weights, --tiny-model and --device, for the commands that load the model too."""
    sub.add_argument("--weights", choices=("auto", "pretrained", "tiny"), help="override the preset's [model] weights")
    sub.add_argument("--tiny-model", help="tiny model directory (default: $RUBBLE_TINY_MODEL or ~/.cache/rubble/tiny-model)")
    sub.add_argument("--device", choices=("cuda", "mps", "cpu"), help="default: cuda, else mps, else cpu (the first present)")


def _frame_range(text: str) -> tuple[int, int]:
    first, _, last = text.partition("-")
    try:
        return int(first), int(last or first)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIRST-LAST, got {text!r}") from None


def _indices(text: str) -> list[int]:
    try:
        return sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated window numbers, got {text!r}") from None


class _Stage:
    """A named, timed step: logs to stderr, records its seconds in `timings`."""

    def __init__(self, name: str, timings: dict):
        self.name, self.timings = name, timings

    def __enter__(self):
        print(f"[{self.name}] …", file=sys.stderr)
        self.started = time.perf_counter()

    def __exit__(self, *exc):
        self.timings[self.name] = round(time.perf_counter() - self.started, 3)
        print(f"[{self.name}] {self.timings[self.name]:.2f} s", file=sys.stderr)


def _relative(shot, paths) -> list[str]:
    return [str(Path(p).relative_to(shot.directory)) for p in paths]


def validate(args) -> int:
    from . import long_shot
    from . import shot as shot_module

    shot = shot_module.load(args.shot)
    plan = long_shot.plan(shot)
    missing = [f for f in shot.frames if not shot.pass_path(f).is_file()]
    if missing:
        protocol.warning("missing_passes", f"No pass files yet for frames {missing}.")
    extra = {}
    if args.check_weights:
        from . import models

        from . import detectors

        real = models.real_spec(shot.model)
        extra["real_weights_present"] = not models.missing_files(real)
        extra["detector_weights_missing"] = detectors.missing_weights(shot.model.controls)
        for message in models.unpinned_revisions(real):
            protocol.warning("revision_not_pinned", message)
    protocol.result(
        "validate",
        [],
        frames=[shot.frame_start, shot.frame_end],
        windows=[[shot.frames[w.start], shot.frames[w.stop - 1]] for w in plan],
        weights=shot.model.weights,
        **extra,
    )
    return protocol.EXIT_OK


def derive_control(args) -> int:
    from . import control, control_sheet
    from . import shot as shot_module

    shot = shot_module.load(args.shot)
    frames = shot.frames
    if args.frames:
        first, last = args.frames
        frames = [f for f in shot.frames if first <= f <= last]
    written = control.derive(shot, frames)
    if written or not control_sheet.path(shot).is_file():  # nothing changed: nothing rewritten
        written.append(control_sheet.write(shot))
    protocol.result("control", _relative(shot, written), frames=frames)
    return protocol.EXIT_OK


def generate(args) -> int:
    from . import (blend, contact_sheet, control, control_sheet, families, long_shot, models, provenance,
                   regenerate, temporal, upscale, video_to_video, windows)
    from . import shot as shot_module
    from .cancel import CancelFlag, Cancelled

    timings = {}
    shot = shot_module.load(args.shot)
    cancel = CancelFlag(shot.directory)
    try:
        with _Stage("control", timings):
            if control.derive(shot, shot.frames) or not control_sheet.path(shot).is_file():
                control_sheet.write(shot)
        video_to_video.check(shot)  # refused before any weights load
        regenerate.check(shot)
        with _Stage("model", timings):
            spec = models.resolve(shot.model, args.weights or shot.model.weights, models.tiny_dir(args.tiny_model))
            device = models.pick_device(args.device, spec)
        with _Stage("windows", timings):
            done = families.get(shot.model.family).run(shot, spec, device, args.windows, cancel)
    except Cancelled as exc:
        plan = long_shot.plan(shot)
        kept = [str(windows.directory(shot.directory, w).relative_to(shot.directory)) for w in plan
                if windows.read_record(shot.directory, w) is not None]
        protocol.cancelled(f"Cancelled ({exc}); finished windows are kept and a rerun resumes.", kept)
        return protocol.EXIT_CANCELLED
    description = models.describe(spec)
    outputs = []
    missing, stale = blend.unfinished(shot)
    if stale:  # only possible with --windows: a farm task does its share, the others are reported
        protocol.warning(
            "windows_stale",
            f"Windows {stale} were made from control maps or settings that have changed since, so nothing is "
            f"blended. Run: {blend.redo_command(shot, stale)}",
        )
    complete = not missing and not stale
    if complete and provenance.describes_current_frames(shot):
        protocol.progress("blend", 1, 1, "frames already blended from these windows, skipped")
    elif complete:
        # provenance.json last: it names the windows the frames were blended from, so a run killed
        # while blending or upscaling finds it stale and does them again (upscaled frames whose
        # records match are kept: inference/upscale.py).
        with _Stage("blend", timings):
            outputs += _relative(shot, blend.run(shot))
        try:
            with _Stage("upscale", timings):
                upscaler = upscale.resolve(shot, args.weights or shot.model.weights, models.tiny_dir(args.tiny_model))
                outputs += _relative(shot, upscale.run(shot, upscaler, device, cancel))
        except Cancelled as exc:
            kept = _relative(shot, upscale.current_records(shot, upscaler, device))
            protocol.cancelled(f"Cancelled ({exc}) while upscaling; finished frames are kept and a rerun resumes.", kept)
            return protocol.EXIT_CANCELLED
        with _Stage("temporal", timings):
            stability = temporal.measure(shot)
        with _Stage("contact_sheet", timings):
            outputs += _relative(shot, [contact_sheet.write(shot, description["smoke_test"], stability)])
        from . import estimate as estimate_module

        provenance.write(shot, description, temporal_warp_error=stability, **upscale.provenance(shot, upscaler),
                         estimate=estimate_module.for_provenance(shot, spec, device, description, timings,
                                                                 len(done["generated"])))
        outputs.append("provenance.json")
    protocol.result(
        "generate",
        outputs,
        windows_generated=done["generated"],
        windows_skipped=done["skipped"],
        blended=complete,
        smoke_test=description["smoke_test"],
        device=device,
        timings=timings,
    )
    return protocol.EXIT_OK


def preview(args) -> int:
    from . import models
    from . import preview as preview_module
    from . import shot as shot_module
    from .cancel import CancelFlag, Cancelled

    timings = {}
    shot = shot_module.load(args.shot)
    preview_module.check(shot, args.frame)  # before any weights load
    cancel = CancelFlag(shot.directory)
    try:
        with _Stage("model", timings):
            spec = models.resolve(shot.model, args.weights or shot.model.weights, models.tiny_dir(args.tiny_model))
            device = models.pick_device(args.device, spec)
        with _Stage("preview", timings):
            made = preview_module.run(shot, args.frame, spec, device, cancel)
    except Cancelled as exc:
        protocol.cancelled(f"Cancelled ({exc}); nothing of this preview was written.", [])
        return protocol.EXIT_CANCELLED
    folder = preview_module.directory(shot, made["id"])
    protocol.result("preview", _relative(shot, [made["frame"], folder / "provenance.json"]), id=made["id"],
                    frame=args.frame, reused=made["reused"], look=made["look"], seed=shot.seed, smoke_test=spec.smoke_test, device=device,
                    timings=timings)
    return protocol.EXIT_OK


def draft(args) -> int:
    from . import control, control_sheet, families, models
    from . import draft as draft_module
    from . import shot as shot_module
    from .cancel import CancelFlag, Cancelled

    timings = {}
    shot = shot_module.load(args.shot)
    draft_module.check_family(shot)
    settings = draft_module.settings(shot)
    generated = draft_module.draft_shot(shot, settings)
    cancel = CancelFlag(shot.directory)
    root = draft_module.records_root(shot)
    try:
        with _Stage("control", timings):  # the final's control maps: derived once, shared
            if control.derive(shot, shot.frames) or not control_sheet.path(shot).is_file():
                control_sheet.write(shot)
        with _Stage("model", timings):
            spec = draft_module.spec(generated, args.weights or shot.model.weights, models.tiny_dir(args.tiny_model))
            device = models.pick_device(args.device, spec)
            lora = draft_module.lora_file(settings, spec)
            draft_module.forget_other_settings(shot, settings, lora)
        with _Stage("windows", timings):
            # Loaded up front (the family's run would load the final's scheduler): a resumed draft whose
            # windows are all done still pays the load, a few seconds at draft sizes.
            pipe = draft_module.load_pipeline(spec, device, generated, lora, settings.lora_scale)
            done = families.get(shot.model.family).run(generated, spec, device, None, cancel, pipe=pipe, records=root)
    except Cancelled as exc:
        from . import long_shot, windows

        kept = [str(windows.directory(root, w).relative_to(shot.directory)) for w in long_shot.plan(generated)
                if windows.read_record(root, w) is not None]
        protocol.cancelled(f"Cancelled ({exc}); finished draft windows are kept and a rerun resumes.", kept)
        return protocol.EXIT_CANCELLED
    with _Stage("blend", timings):
        outputs = _relative(shot, draft_module.blend(shot, generated))
    description = models.describe(spec)
    outputs.append(str(draft_module.write_provenance(shot, generated, settings, description, lora,
                                                               type(pipe.scheduler).__name__, timings)
                       .relative_to(shot.directory)))
    protocol.result(
        "draft",
        outputs,
        kind=draft_module.KIND,
        size=[generated.model.width, generated.model.height],
        steps=settings.steps,
        windows_generated=done["generated"],
        windows_skipped=done["skipped"],
        smoke_test=description["smoke_test"],
        device=device,
        timings=timings,
    )
    return protocol.EXIT_OK


def estimate(args) -> int:
    from . import control, control_sheet, models
    from . import estimate as estimate_module
    from . import shot as shot_module
    from .cancel import CancelFlag, Cancelled

    timings = {}
    shot = shot_module.load(args.shot)
    cancel = CancelFlag(shot.directory)
    with _Stage("control", timings):  # the calibration window needs its control maps, as generate does
        if control.derive(shot, shot.frames) or not control_sheet.path(shot).is_file():
            control_sheet.write(shot)
    spec = models.resolve(shot.model, args.weights or shot.model.weights, models.tiny_dir(args.tiny_model))
    device = models.pick_device(args.device, spec)
    try:
        with _Stage("estimate", timings):
            record = estimate_module.run(shot, spec, device, cancel, args.recalibrate)
    except Cancelled as exc:
        protocol.cancelled(f"Cancelled ({exc}); nothing was cached.", [])
        return protocol.EXIT_CANCELLED
    print(record["message"], file=sys.stderr)
    protocol.result("estimate", [estimate_module.FILE], **{k: v for k, v in record.items() if k != "schema"},
                    timings=timings)
    return protocol.EXIT_OK


def noise(args) -> int:
    from . import control, files, noise_warp
    from . import shot as shot_module

    shot = shot_module.load(args.shot)
    if shot.noise.mode == "warped":  # the flow it follows (skipped when the control maps are current)
        control.derive(shot, shot.frames)
    latents = noise_warp.shot_latents(shot)
    path = shot.directory / "noise" / "latents.npy"
    files.write_npy(path, latents)
    protocol.result("noise", _relative(shot, [path]), shape=list(latents.shape), mode=shot.noise.mode,
                    sha256=noise_warp.latents_sha256(latents))
    return protocol.EXIT_OK


def blend_windows(args) -> int:
    from . import blend
    from . import shot as shot_module

    shot = shot_module.load(args.shot)
    protocol.result("blend", _relative(shot, blend.run(shot)))
    return protocol.EXIT_OK


def upscale_frames(args) -> int:
    from . import models, upscale
    from . import shot as shot_module
    from .cancel import CancelFlag, Cancelled

    shot = shot_module.load(args.shot)
    cancel = CancelFlag(shot.directory)
    upscaler = upscale.resolve(shot, args.weights or shot.model.weights, models.tiny_dir(args.tiny_model))
    device = models.pick_device(args.device, upscaler) if upscaler else "cpu"
    try:
        written = upscale.run(shot, upscaler, device, cancel)
    except Cancelled as exc:
        kept = _relative(shot, upscale.current_records(shot, upscaler, device))
        protocol.cancelled(f"Cancelled ({exc}); finished frames are kept and a rerun resumes.", kept)
        return protocol.EXIT_CANCELLED
    protocol.result("upscale", _relative(shot, written), **upscale.provenance(shot, upscaler))
    return protocol.EXIT_OK


def contact_sheet(args) -> int:
    from . import contact_sheet as sheet
    from . import shot as shot_module

    shot = shot_module.load(args.shot)
    protocol.result("contact-sheet", _relative(shot, [sheet.write(shot)]))
    return protocol.EXIT_OK


def tiny_model(args) -> int:
    from . import tiny_model as tiny

    started = time.perf_counter()
    tiny.build(args.directory)
    protocol.result("tiny-model", [str(args.directory)], seconds=round(time.perf_counter() - started, 3))
    return protocol.EXIT_OK


def fetch(args) -> int:
    from dataclasses import replace

    from . import draft, models, upscale
    from . import fetch as fetch_module
    from . import shot as shot_module

    if args.shot:
        loaded = shot_module.load(args.shot)
        model, upscaler, drafts = loaded.model, loaded.upscale, draft.settings(loaded)
    else:
        preset = args.preset or DEFAULT_PRESET
        model, upscaler, drafts = _preset_model(preset), _preset_upscale(preset), _preset_draft(preset)
    spec = models.real_spec(model)
    extra = upscale.fetch_sources(upscaler) + (draft.fetch_sources(model.family, drafts) if args.draft else ())
    report = fetch_module.run(replace(spec, sources=spec.sources + extra), args.variant)
    protocol.result("fetch", [], **report)
    return protocol.EXIT_OK


def doctor(args) -> int:
    from . import doctor as doctor_module  # imports nothing heavy: it first checks what is installed

    def load_model():
        from . import shot as shot_module  # numpy: only once doctor knows it is installed

        return shot_module.load(args.shot).model if args.shot else _preset_model(DEFAULT_PRESET)

    def load_upscaler():
        from . import shot as shot_module
        from . import upscale

        settings = shot_module.load(args.shot).upscale if args.shot else _preset_upscale(DEFAULT_PRESET)
        return upscale.fetch_sources(settings)

    report = doctor_module.check(load_model, args.tiny_model, load_upscaler)
    protocol.result("doctor", [], **report)
    return protocol.EXIT_OK


def _preset_draft(path: Path):
    """A preset file's [draft] settings (defaults when it has none)."""
    from . import draft

    return _preset_section(path, "draft", lambda table: draft.parse(table or {}))


def _preset_upscale(path: Path):
    """A preset file's [upscale] settings (defaults when it has none)."""
    from . import upscale_settings

    return _preset_section(path, "upscale", upscale_settings.settings)


def _preset_section(path: Path, section: str, parse):
    """`parse` of a preset file's [section] table (None when it has none), read directly (no shot needed)."""
    try:
        return parse(tomllib.loads(Path(path).read_text(encoding="utf-8")).get(section))
    except (OSError, tomllib.TOMLDecodeError, TypeError, ValueError) as exc:
        raise BackendError("bad_preset", f"Could not read the [{section}] settings of the preset {path}: "
                           f"{type(exc).__name__}: {exc}",
                           f"Fix the [{section}] section (presets/default.toml is the reference).") from exc


def serve(args) -> int:
    from . import serve as serve_module

    return serve_module.serve(serve_module.state_file(args.state_file), args.host, args.port)


def _preset_model(path: Path):
    """A preset file's [model] settings, read directly (no shot needed)."""
    from . import shot as shot_module

    try:
        preset = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        return shot_module.model_settings(preset["model"], shot_module.preset_controls(preset))
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BackendError(
            "bad_preset",
            f"Could not read the [model] settings of the preset {path}: {type(exc).__name__}: {exc}",
            "Give a preset .toml with a complete [model] section (presets/default.toml is the reference), "
            "or a shot directory instead.",
        ) from exc


if __name__ == "__main__":
    sys.exit(main())
