"""The shot pipeline: a list of named stages, each resumable, each yielding progress.

The same generator drives the headless CLI (iterated to the end) and the
Generate Final operator (one step per timer tick, so the UI never freezes and
Cancel is honoured between steps). Stage keys chain (see core/stamps.py): a stage
runs again only when something it depends on changed.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import bpy

from .core import VERSION, backend, pass_files
from .core.preset import Preset
from .core.shot_manifest import ShotManifestError, build_manifest, read_manifest, write_manifest
from .core.stage_status import StageKeys, StageState, stage_states
from .core.stamps import Stamps, digest
from .scene import bake, ownership, passes, roles, sequencer
from .scene import build as scene_build
from .scene.destruction import stage as destruction
from .scene.destruction import triggers as destruction_triggers

SCENE_NAME = "Rubble"  # what the shot's scene is called; Rubble finds it by its tag (scene/ownership.py)
# The preset sections that define the simulated scene: changing one means a new shot.
SCENE_SECTIONS = ("shot", "building", "materials", "fracture", "simulation", "triggers")
STAGES = ("build", "trigger", "bake", "passes", "generate", "composite")
# Stages a button runs on its own (never part of Generate Final), after the passes they need.
ON_DEMAND_STAGES = ("estimate", "draft")


class StageError(RuntimeError):
    """A stage could not run; the message says what to do next."""


class Cancelled(RuntimeError):
    pass


@dataclass(frozen=True)
class Progress:
    stage: str
    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


@dataclass
class ShotJob:
    shot_dir: Path
    preset: Preset
    stages: tuple[str, ...] = STAGES
    frames: tuple[int, int] | None = None      # a farm chunk for `passes`; None = the whole shot
    backend_python: str = ""                   # add-on preference or --backend-python
    weights: str | None = None                 # overrides preset model.weights
    tiny_model: Path | None = None
    # A Blender binary that renders the passes in a background process (`-b shot.blend`, the
    # command a farm chunk runs), so the UI never freezes and Cancel kills it at once.
    # "": render in this process (the CLI, which is a background Blender already; the bpy module).
    blender: str = ""
    # True when this process belongs to the job (the CLI): it may reset or open the main
    # file. False inside an artist's session: the shot gets its own scene, nothing else changes.
    owns_session: bool = False
    cancel_requested: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    results: dict[str, list] = field(default_factory=dict)  # stage -> the backend's result events
    scene: bpy.types.Scene | None = None
    passes_process: subprocess.Popen | None = None  # the background Blender, while it renders
    camera_changed: bool = False  # stage build re-aimed the camera of a baked scene: bake saves it
    _objects: dict = field(default_factory=dict)

    def __post_init__(self):
        self.shot_dir = Path(self.shot_dir).resolve()
        self.stamps = Stamps(self.shot_dir)

    # Paths of the shot directory (docs/contract.md)
    @property
    def blend_path(self) -> Path:
        return self.shot_dir / "shot.blend"

    def pass_path(self, frame: int) -> Path:
        return self.shot_dir / "passes" / f"{frame:04d}.exr"

    def shot_frames(self) -> range:
        return range(self.preset.shot.frame_start, self.preset.shot.frame_end + 1)

    # Stage keys: each includes the key of what it builds on.
    def scene_key(self) -> str:
        tags = sorted(self.artist_tags().items())
        return digest("scene", VERSION, self.preset.section_hash(*SCENE_SECTIONS), *(f"{n}={r}" for n, r in tags))

    def artist_tags(self) -> dict[str, str]:
        """object name -> role of the artist's objects the shot links (scene/roles.py). A process
        that owns its session has no artist's file: it renders what shot.blend carries."""
        return roles.recorded(self.shot_dir) if self.owns_session else roles.tagged()

    def camera_key(self) -> str:
        """The camera is built with the scene but is no input to the simulation: a new `[camera]`
        re-aims it in the baked scene and redoes the passes and what follows, never the bake."""
        return digest("camera", self.scene_key(), self.preset.section_hash("camera"))

    def pass_key(self) -> str:
        return digest("passes", self.camera_key(), self.preset.section_hash("render"))

    def generate_key(self) -> str:
        return digest("generate", self.pass_key(),
                      self.preset.section_hash("look", "model", "noise", "controls", "long_shot", "memory", "upscale",
                                               "regenerate"),
                      self.weights)

    def composite_key(self) -> str:
        return digest("composite", self.generate_key())

    def stage_states(self) -> dict[str, StageState]:
        """What the panel shows for each stage (core/stage_status.py)."""
        scene_key = self.scene_key()
        keys = StageKeys(scene=scene_key, camera=self.camera_key(), passes=self.pass_key(),
                         generate=self.generate_key(), composite=self.composite_key())
        shot = ownership.find_scene(ownership.SHOT)
        ours = shot is not None and shot.get("rubble_shot_dir") == str(self.shot_dir)
        in_file = (shot.get("rubble_scene_key"), shot.get("rubble_camera_key")) if ours else None
        return stage_states(self.shot_dir, keys, self.shot_frames(), in_file)

    def check_cancel(self) -> None:
        if self.cancel_requested:
            raise Cancelled("Cancelled; finished work was kept and the next run resumes from it.")


def _up_to_date(stage: str) -> Progress:
    return Progress(stage, 1, 1, "up to date, skipped")


# --- scene stages -----------------------------------------------------------------

def reset_session() -> None:
    """An empty file for a process that belongs to the job. Unlike read_factory_settings,
    read_homefile keeps the preferences and the enabled extensions (Rubble itself, whose
    `blender -c rubble` command is running this) and `save_version = 0`."""
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)


def open_or_new_scene(job: ShotJob) -> bpy.types.Scene:
    """The shot's scene: reused when its key matches, reloaded from shot.blend when the
    process is the job's own and the file is fresh, otherwise a new empty one. Only a
    scene tagged as Rubble's is ever reused or replaced, whatever the artist's are called."""
    if (job.shot_dir / "shot.json").exists():
        # A shot made by another Rubble version is refused, never silently overwritten.
        try:
            read_manifest(job.shot_dir)
        except ShotManifestError as exc:
            raise StageError(str(exc)) from None
    key = job.scene_key()
    fresh_on_disk = job.stamps.is_fresh("bake", key, [job.blend_path, job.shot_dir / "shot.json"])
    existing = ownership.find_scene(ownership.SHOT)
    if (existing is not None and existing.get("rubble_scene_key") == key
            and existing.get("rubble_shot_dir") == str(job.shot_dir) and fresh_on_disk):
        return existing
    if job.owns_session and fresh_on_disk:
        bpy.ops.wm.open_mainfile(filepath=str(job.blend_path))
        scene = ownership.find_scene(ownership.SHOT)
        if scene is not None and scene.get("rubble_scene_key") == key:
            scene["rubble_shot_dir"] = str(job.shot_dir)  # wherever the shot is now (not saved in it)
            return scene
    if job.owns_session:
        reset_session()
        scene = ownership.own(bpy.context.scene, ownership.SHOT)
        scene.name = SCENE_NAME
        return scene
    edit = ownership.find_scene(ownership.EDIT)
    if edit is not None:  # its strips show the replaced shot's frames; the artist's own strips stay
        sequencer.remove_our_strips(edit)
    return ownership.new_scene(SCENE_NAME, ownership.SHOT)


def write_shot_blend(job: ShotJob) -> None:
    """shot.blend holds the shot's and the edit's scenes and what they use, never the rest
    of an artist's file; paths become relative so the shot folder can move. Written to a
    temporary name first, so a reader (a farm chunk) never opens half a file."""
    scenes = {s for s in (ownership.find_scene(ownership.SHOT), ownership.find_scene(ownership.EDIT)) if s}
    tmp = job.blend_path.with_name(f".{job.blend_path.stem}.tmp.blend")
    with _relocatable(scenes, job.shot_dir):
        bpy.data.libraries.write(str(tmp), scenes, path_remap="RELATIVE_ALL")
    os.replace(tmp, job.blend_path)


@contextmanager
def _relocatable(scenes, shot_dir: Path):
    """While shot.blend is written: what path_remap does not reach becomes relative too. The
    render outputs (the last pass or movie rendered) get `//` paths (`//` alone when they lie
    outside the shot), and the scene's record of its absolute shot folder is left out
    (open_or_new_scene sets it again on opening), so a moved or packed shot holds no path
    outside itself."""
    saved = [(scene, scene.render.filepath, scene.get("rubble_shot_dir")) for scene in scenes]
    try:
        for scene in scenes:
            path = Path(scene.render.filepath)
            if path.is_absolute():
                inside = shot_dir in path.parents
                scene.render.filepath = "//" + (path.relative_to(shot_dir).as_posix() if inside else "")
            scene.pop("rubble_shot_dir", None)
        yield
    finally:
        for scene, filepath, recorded in saved:
            scene.render.filepath = filepath
            if recorded is not None:
                scene["rubble_shot_dir"] = recorded


def sync_manifest_preset(job: ShotJob) -> None:
    """shot.json carries the preset the backend reads (look, model): keep it the job's
    when only the downstream sections changed. Unchanged presets write nothing, so
    parallel farm chunks never rewrite the file under each other."""
    manifest = read_manifest(job.shot_dir)
    if manifest.get("preset") != job.preset.to_dict():
        manifest["preset"] = job.preset.to_dict()
        write_manifest(job.shot_dir, manifest)


def stage_build(job: ShotJob) -> Iterator[Progress]:
    tags = job.artist_tags()
    try:
        roles.indices(tags)  # refused before any work
    except roles.RoleError as exc:
        raise StageError(str(exc)) from None
    job.scene = open_or_new_scene(job)
    if job.scene.get("rubble_scene_key") == job.scene_key():
        if job.scene.get("rubble_camera_key") == job.camera_key():
            yield _up_to_date("build")
        else:
            scene_build.build_camera(job.scene, job.preset)
            job.camera_changed = True
            yield Progress("build", 1, 1, "[camera] changed: re-aimed the camera; the simulation is kept")
        return
    built = destruction.run(job.scene, job.preset)
    if job.owns_session:
        tags = {}  # the tagged objects lived in the artist's file: a rebuild here cannot link them
    job._objects = {"built": built, "tags": tags, "artist_roles": roles.link(job.scene, tags)}
    yield Progress("build", 1, 1, f"{len(built.fragments)} fragments, {len(built.bonds)} bonds "
                   f"({', '.join(f'{k} {v:.1f}s' for k, v in built.timings.items())})")


def stage_trigger(job: ShotJob) -> Iterator[Progress]:
    if not job._objects:
        yield _up_to_date("trigger")
        return
    destruction_triggers.run(job.scene, job._objects["built"], job.preset)
    ownership.own_animations(job.scene)
    kinds = ", ".join(f"{t.kind} at frame {t.frame}" for t in job.preset.triggers) or "none"
    yield Progress("trigger", 1, 1, kinds)


def stage_bake(job: ShotJob) -> Iterator[Progress]:
    if not job._objects:
        if job.camera_changed:
            yield from _save_new_camera(job)
            return
        sync_manifest_preset(job)
        yield _up_to_date("bake")
        return
    scene = job.scene
    yield Progress("bake", 0, 2, "baking rigid bodies (pre-roll included)")
    destruction.bake(scene, job._objects["built"])
    records = destruction.shot_records(scene, job._objects["built"], job.preset)
    cameras = dict(bake.camera_records(scene))
    manifest = build_manifest(job.preset.to_dict(), cameras,
                              {"rubble": VERSION, "blender": bpy.app.version_string, "python": platform.python_version()},
                              artist_roles=job._objects["artist_roles"], tagged=job._objects["tags"], **records)
    write_manifest(job.shot_dir, manifest)
    scene["rubble_scene_key"] = job.scene_key()
    scene["rubble_camera_key"] = job.camera_key()
    scene["rubble_shot_dir"] = str(job.shot_dir)
    job.shot_dir.mkdir(parents=True, exist_ok=True)
    write_shot_blend(job)
    job.stamps.record("bake", job.scene_key())
    yield Progress("bake", 2, 2, f"baked frames {scene.frame_start}-{scene.frame_end}, saved {job.blend_path.name}")


def _save_new_camera(job: ShotJob) -> Iterator[Progress]:
    """After the camera alone changed: shot.json's per-frame camera and preset, and shot.blend (the
    bake stays in it), so the passes render and the backend reads the new camera."""
    scene = job.scene
    manifest = read_manifest(job.shot_dir)
    manifest["camera"] = {str(frame): record for frame, record in bake.camera_records(scene)}
    manifest["preset"] = job.preset.to_dict()
    write_manifest(job.shot_dir, manifest)
    scene["rubble_camera_key"] = job.camera_key()
    write_shot_blend(job)
    yield Progress("bake", 1, 1, f"kept the bake; saved the new camera in {job.blend_path.name} and shot.json")


# --- passes ------------------------------------------------------------------------

def stage_passes(job: ShotJob) -> Iterator[Progress]:
    first, last = job.frames or (job.preset.shot.frame_start, job.preset.shot.frame_end)
    shot = job.shot_frames()
    if first not in shot or last not in shot or last < first:
        raise StageError(f"Frames {first}-{last} are outside the shot ({shot.start}-{shot.stop - 1}).")
    key = job.pass_key()
    todo = [f for f in range(first, last + 1)
            if not job.stamps.is_fresh("passes", key, [job.pass_path(f)], item=str(f))]
    if not todo:
        yield _up_to_date("passes")
        return
    width, height = job.preset.shot.resolution
    render = job.preset.render
    problem = pass_files.disk_problem(width, height, render.denoise, render.pass_codec, len(todo),
                                      shutil.disk_usage(job.shot_dir).free, job.shot_dir)
    if problem:
        raise StageError(problem)
    if job.blender:
        yield from _passes_in_background(job, key, todo)
        return
    device = passes.configure(job.scene, job.preset)
    passes.write_device_record(job.shot_dir, first, last, todo, device)
    for done, frame in enumerate(todo):
        job.check_cancel()
        yield Progress("passes", done, len(todo), f"rendering frame {frame} on {device['device']}")
        passes.render_frame(job.scene, frame, job.pass_path(frame))
        job.stamps.record("passes", key, item=str(frame))
    yield Progress("passes", len(todo), len(todo), f"rendered {len(todo)} frames")


def background_blender() -> str:
    """This Blender's own binary, when there is one to start: the bpy module (tests, the
    wheel) has none (`binary_path` is empty), and then the passes render in-process."""
    path = bpy.app.binary_path
    return path if path and os.path.isfile(path) and os.access(path, os.X_OK) else ""


def headless_entry(root: Path = backend.PACKAGE_ROOT) -> str:
    """`--python-expr` that runs the Rubble CLI from the extension's folder with the arguments
    after `--`: works whether or not the extension is enabled in that Blender (README, farms)."""
    return f"import sys; sys.path.insert(0, {str(root)!r}); from addon.cli import blender_main; blender_main()"


def background_passes_command(blender: str, shot_dir: Path, first: int, last: int) -> list[str]:
    """The farm chunk's command for frames first-last of the shot saved in shot.blend."""
    return [blender, "-b", str(Path(shot_dir) / "shot.blend"), "--python-expr", headless_entry(), "--",
            "shot", str(shot_dir), "--stages", "passes", "--frames", f"{first}-{last}"]


def _remove_unfinished_passes(job: ShotJob) -> None:
    """A killed render leaves its temporary EXR (passes.render_frame writes tmp + rename)."""
    for tmp in (job.shot_dir / "passes").glob(".*.tmp.exr"):
        tmp.unlink(missing_ok=True)


def _passes_in_background(job: ShotJob, key: str, todo: list[int]) -> Iterator[Progress]:
    """Render `todo` in a background Blender that opens shot.blend (saved by the bake), polling
    its per-frame stamps. Cancel kills it at once; the frames it finished stay stamped."""
    log_path = job.shot_dir / "logs" / "passes-background.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = background_passes_command(job.blender, job.shot_dir, todo[0], todo[-1])
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(backend.quote(a) for a in command)}\n")
        log.flush()
        job.passes_process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, cwd=str(job.shot_dir))
    proc = job.passes_process
    finished = 0
    try:
        while proc.poll() is None:
            if job.cancel_requested:
                proc.kill()
                proc.wait()
                _remove_unfinished_passes(job)
                job.check_cancel()
            while finished < len(todo) and job.stamps.is_fresh(
                    "passes", key, [job.pass_path(todo[finished])], item=str(todo[finished])):
                finished += 1
            yield Progress("passes", finished, len(todo),
                           f"rendering in a background Blender: {finished}/{len(todo)} frames")
            time.sleep(0.05)
    finally:
        if proc.poll() is None:  # the generator was closed (an error elsewhere, the operator ended)
            proc.kill()
            proc.wait()
            _remove_unfinished_passes(job)
    missing = [f for f in todo if not job.stamps.is_fresh("passes", key, [job.pass_path(f)], item=str(f))]
    if proc.returncode != 0 or missing:
        tail = "".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines(True)[-15:])
        raise StageError(f"The background Blender rendering the passes exited with code {proc.returncode} "
                         f"({len(missing)} of {len(todo)} frames missing). Its log, {log_path}, ends with:\n{tail}")
    yield Progress("passes", len(todo), len(todo), f"rendered {len(todo)} frames in a background Blender")


# --- generation (backend subprocess) -----------------------------------------------

def _generated_frames(job: ShotJob) -> list[Path]:
    return [job.shot_dir / "frames" / f"{f:04d}.png" for f in job.shot_frames()]


def _real_weights_arrived(job: ShotJob, python: Path) -> bool:
    """Smoke-test frames made under `weights = "auto"` are stale once the real weights are
    on this machine: their presence is an input too (a cache lookup, no torch import)."""
    if (job.weights or job.preset.model.weights) != "auto":
        return False
    try:
        provenance = json.loads((job.shot_dir / "provenance.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return True
    if not provenance.get("smoke_test"):
        return False
    results = backend.run_to_end(["validate", str(job.shot_dir), "--check-weights"], job.shot_dir, python)
    return any(r.get("real_weights_present") for r in results)


def stage_generate(job: ShotJob) -> Iterator[Progress]:
    outputs = [*_generated_frames(job), job.shot_dir / "provenance.json", job.shot_dir / "contact_sheet.png"]
    python = backend.find_backend_python(job.backend_python)
    if job.stamps.is_fresh("generate", job.generate_key(), outputs) and not _real_weights_arrived(job, python):
        yield _up_to_date("generate")
        return
    key = job.pass_key()
    missing = [f for f in job.shot_frames() if not job.stamps.is_fresh("passes", key, [job.pass_path(f)], item=str(f))]
    if missing:
        raise StageError(f"Passes are missing or stale for {len(missing)} frames (first: {missing[0]}). "
                         "Render them first (stage `passes`; on a farm, every chunk must finish before `generate`).")
    yield from relay_backend(job, "generate", ["generate", str(job.shot_dir)])
    job.stamps.record("generate", job.generate_key())
    yield Progress("generate", 1, 1, "frames written")


# --- composite ---------------------------------------------------------------------

def stage_composite(job: ShotJob) -> Iterator[Progress]:
    movie = job.shot_dir / "final.mp4"
    key = job.composite_key()
    if job.stamps.is_fresh("composite", key, [movie]) and ownership.find_scene(ownership.EDIT):
        yield _up_to_date("composite")
        return
    clay = [job.shot_dir / "control" / "clay" / f"{f:04d}.png" for f in job.shot_frames()]
    generated = _generated_frames(job)
    masked = bool(job.preset.regenerate.roles)  # the backend composited frames/ over the plate
    unmasked = [job.shot_dir / "regenerate" / "unmasked" / f"{f:04d}.png" for f in job.shot_frames()] if masked else []
    masks = [job.shot_dir / "regenerate" / "mask" / f"{f:04d}.png" for f in job.shot_frames()] if masked else []
    absent = [p for p in clay + generated + unmasked + masks if not p.exists()]
    if absent:
        raise StageError(f"{len(absent)} images are missing (first: {absent[0]}); run the generate stage first.")
    edit = sequencer.build_edit(job.scene, clay, generated, unmasked, masks)
    yield Progress("composite", 0, 1, "rendering final.mp4")
    sequencer.render_movie(edit, movie)
    write_shot_blend(job)
    job.stamps.record("composite", key)
    yield Progress("composite", 1, 1, f"wrote {movie.name}")


# --- draft and estimate (issue 22): on demand, from the same passes ------------------

def _require_passes(job: ShotJob, what: str) -> None:
    key = job.pass_key()
    missing = [f for f in job.shot_frames() if not job.stamps.is_fresh("passes", key, [job.pass_path(f)], item=str(f))]
    if missing:
        raise StageError(f"Passes are missing or stale for {len(missing)} frames (first: {missing[0]}): "
                         f"render them before {what} (stage `passes`).")


def relay_backend(job: ShotJob, stage: str, args: list[str], log_name: str = "backend.log") -> Iterator[Progress]:
    """Run `python -m inference ARGS` with the job's --weights / --tiny-model (on the warm backend when
    one answers, else as a process), relaying its progress and warnings as `stage` progress; Cancel
    (job.cancel_requested) stops it after the current step. Returns its result events."""
    args = [*args]
    if job.weights:
        args += ["--weights", job.weights]
    if job.tiny_model:
        args += ["--tiny-model", str(job.tiny_model)]
    run = backend.BackendRun(args, job.shot_dir, backend.find_backend_python(job.backend_python), log_name=log_name)
    try:
        ended = False
        while not ended:
            if job.cancel_requested and not run.cancel_sent:
                run.cancel()
            events, ended = run.poll()
            for event in events:
                if event["type"] == "progress":
                    yield Progress(f"{stage}:{event.get('stage', '')}", event.get("done", 0),
                                   event.get("total", 0), event.get("message", ""))
                elif event["type"] == "warning":
                    yield Progress(stage, 0, 0, f"WARNING [{event.get('code')}]: {event.get('message')}")
            if not events and not ended:
                time.sleep(0.05)
                yield Progress(stage, 0, 0, "")  # a heartbeat: lets the UI redraw and cancel
        return run.finish()
    except backend.BackendCancelled as exc:
        raise Cancelled(str(exc)) from None
    finally:
        if run.running():  # a process or a warm-backend run (run.proc is None on the server)
            run.stop()


def stage_estimate(job: ShotJob) -> Iterator[Progress]:
    """`python -m inference estimate`: the backend writes <shot>/estimate.json, which the panel shows."""
    _require_passes(job, "an estimate")
    sync_manifest_preset(job)
    job.results["estimate"] = yield from relay_backend(job, "estimate", ["estimate", str(job.shot_dir)],
                                                       log_name="estimate.log")
    (result,) = job.results["estimate"]
    yield Progress("estimate", 1, 1, result["message"])


def stage_draft(job: ShotJob) -> Iterator[Progress]:
    """`python -m inference draft` into drafts/, then a "Draft" strip in the edit (the final's stay)."""
    _require_passes(job, "a draft")
    sync_manifest_preset(job)  # the [draft] settings travel in shot.json's preset
    job.results["draft"] = yield from relay_backend(job, "draft", ["draft", str(job.shot_dir)], log_name="draft.log")
    drafts = [job.shot_dir / "drafts" / "frames" / f"{f:04d}.png" for f in job.shot_frames()]
    absent = [p for p in drafts if not p.exists()]
    if absent:
        raise StageError(f"The draft finished without {len(absent)} of its frames (first: {absent[0]}); "
                         f"see {job.shot_dir / 'logs' / 'draft.log'}.")
    sequencer.show_draft(job.scene, drafts)
    write_shot_blend(job)  # the edit with its Draft strip travels with the shot, as after a composite
    yield Progress("draft", 1, 1, f"draft of {len(drafts)} frames in the sequencer (strip \"{sequencer.DRAFT_STRIP}\")")


STAGE_FUNCTIONS: dict[str, Callable[[ShotJob], Iterator[Progress]]] = {
    "build": stage_build, "trigger": stage_trigger, "bake": stage_bake,
    "passes": stage_passes, "generate": stage_generate, "composite": stage_composite,
    "estimate": stage_estimate, "draft": stage_draft,
}


def run(job: ShotJob) -> Iterator[Progress]:
    """Run the job's stages in order, timing each; the scene stages always run first
    as a group because every later stage needs the baked scene."""
    unknown = set(job.stages) - set(STAGES) - set(ON_DEMAND_STAGES)
    if unknown:
        raise StageError(f"Unknown stage(s) {sorted(unknown)}; stages are {', '.join(STAGES + ON_DEMAND_STAGES)}.")
    if {"generate", *ON_DEMAND_STAGES} & set(job.stages):
        backend.find_backend_python(job.backend_python)  # fail before rendering, not after
    job.shot_dir.mkdir(parents=True, exist_ok=True)
    for name in STAGES + ON_DEMAND_STAGES:
        if name not in job.stages and name not in ("build", "trigger", "bake"):
            continue
        start = time.perf_counter()
        yield from STAGE_FUNCTIONS[name](job)
        job.timings[name] = time.perf_counter() - start
