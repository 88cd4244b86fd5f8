"""Generate Final and one button per stage: run stages with a progress bar and Cancel (Esc).

Thin by design: check, read settings, drive `pipeline.run`. From the UI (invoke) it
advances one step per timer tick, so Blender never freezes (the passes render in a
background Blender, the generation in the backend process; each tick only polls them);
from a script or `blender -b` (execute) it runs the same steps to the end. Every way out
(done, Esc, an error, an unexpected bug, Blender cancelling the operator) goes through
`_end`, which stops the timer and the progress bar, closes the job and says why.
"""
import traceback

import bpy

from .. import pipeline
from ..core.backend import BackendError, find_backend_python
from ..core.preset import PresetError
from . import results, shot_state
from .shot_state import ShotFolderError, resolve_shot_dir
from .preferences import backend_python_preference
from .presets import current_preset


def _outcome(exc: Exception) -> tuple[set, str]:
    """The report for a run that ended with `exc`."""
    if isinstance(exc, pipeline.Cancelled):
        return {"WARNING"}, str(exc)
    if isinstance(exc, ReferenceError):  # the shot's scene or objects were deleted while it ran
        return {"ERROR"}, f"Rubble stopped: its scene or objects were removed while it ran ({exc}). Run it again."
    if isinstance(exc, OSError):
        return {"ERROR"}, f"Rubble stopped: a file could not be read or written ({exc})."
    if isinstance(exc, (pipeline.StageError, BackendError, RuntimeError)):  # typed: they say what to do
        return {"ERROR"}, str(exc)
    # A bug: keep its traceback where a developer looks, say what it was in the UI.
    traceback.print_exception(exc)
    return {"ERROR"}, (f"Rubble stopped on an unexpected error ({type(exc).__name__}: {exc}); "
                       "the traceback is in the system console. Please report it.")


class PipelineRun:
    """The run machinery shared by Generate Final and the per-stage buttons; `stages` says
    which stages a button asks for (pipeline.run adds the scene stages they need)."""

    stages = pipeline.STAGES
    progress_stages = pipeline.STAGES + pipeline.ON_DEMAND_STAGES  # where a progress event's stage falls on the bar
    _timer = None
    _job = None
    _steps = None

    @classmethod
    def poll(cls, context):
        # A missing backend is left to _begin, which refuses with the whole message and the
        # command that makes one: Blender cuts poll messages short. The panel greys it out.
        reason = shot_state.blocked_reason(context, cls.panel_stage, check_backend=False)
        if reason:
            cls.poll_message_set(reason)
        return reason is None

    def _begin(self, context) -> bool:
        """Check everything that can be checked before any work starts, then claim the run."""
        cls = RUBBLE_OT_generate_final
        if cls.running_job is not None:
            self.report({"ERROR"}, f"Rubble is already generating {cls.running_job.shot_dir}: "
                                   "wait for it to finish, or press Esc to cancel it, then run again.")
            return False
        settings = context.scene.rubble
        try:
            shot_dir = resolve_shot_dir(settings.shot_dir)
            preset = current_preset(context)  # the picked preset with the look edited in the panel
            python = find_backend_python(backend_python_preference(context))
        except (ShotFolderError, PresetError, BackendError) as exc:
            self.report({"ERROR"}, str(exc))
            return False
        self._job = pipeline.ShotJob(
            shot_dir=shot_dir, preset=preset, stages=self.stages, backend_python=str(python),
            weights=None if settings.weights == "PRESET" else settings.weights,
            blender=pipeline.background_blender())
        self._steps = pipeline.run(self._job)
        cls.running_job = self._job
        return True

    def _done_message(self) -> str:
        return f"Rubble: done ({', '.join(self._job.timings)}), shot in {self._job.shot_dir}"

    def execute(self, context):
        if not self._begin(context):
            return {"CANCELLED"}
        try:
            for _ in self._steps:
                pass
        except Exception as exc:
            return self._end(context, *_outcome(exc))
        except BaseException:  # Ctrl-C in `blender -b`: release the run, then stop
            self._end(context, {"WARNING"}, "Rubble: interrupted.")
            raise
        return self._finished(context)

    def _finished(self, context):
        job = self._job
        outcome = self._end(context, {"INFO"}, self._done_message())
        if "generate" in job.stages or "composite" in job.stages:
            said = results.show(context, job.shot_dir, job.shot_frames())  # the strip plays, the last frame shows
            if said:
                self.report({"INFO"}, said)
        return outcome

    def invoke(self, context, event):
        if context.window is None:  # no window, so no timer events would ever arrive
            return self.execute(context)
        if not self._begin(context):
            return {"CANCELLED"}
        self._start_ticking(context)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _start_ticking(self, context) -> None:
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.progress_begin(0, 100)

    def modal(self, context, event):
        if event.type == "ESC":
            self._job.cancel_requested = True
            context.scene.rubble.status = "Cancelling: finishing the current step..."
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            progress = next(self._steps)
            if progress.message:
                context.scene.rubble.status = f"{progress.stage}: {progress.message}"
            if progress.total:  # heartbeats (total 0) only keep the UI responsive
                index = self.progress_stages.index(progress.stage.split(":")[0])
                context.window_manager.progress_update(int(100 * (index + progress.fraction) / len(self.progress_stages)))
        except StopIteration:
            return self._finished(context)
        except Exception as exc:
            return self._end(context, *_outcome(exc))
        return {"RUNNING_MODAL"}

    def cancel(self, context):
        """Blender ends the operator itself (a file is loaded, the window closes)."""
        if self._job is not None:
            self._job.cancel_requested = True
        self._end(context, {"WARNING"}, "Rubble: cancelled; finished work was kept and the next run resumes from it.")

    def _end(self, context, level: set, message: str):
        """The one way out: release the run, stop the job's generator (its `finally` stops
        a running backend), remove the timer and the progress bar, show why it ended."""
        cls = RUBBLE_OT_generate_final
        if cls.running_job is self._job:
            cls.running_job = None
        shot_state.invalidate()
        steps, self._steps = self._steps, None
        if steps is not None:
            try:
                steps.close()
            except Exception:  # cleanup must go on; the bug stays visible in the console
                traceback.print_exc()
        if self._timer is not None:
            wm = context.window_manager
            wm.event_timer_remove(self._timer)
            self._timer = None
            wm.progress_end()
        try:
            context.scene.rubble.status = message.splitlines()[0]
        except (AttributeError, ReferenceError):  # no scene any more (a file was loaded)
            pass
        self.report(level, message)
        return {"FINISHED"} if "INFO" in level else {"CANCELLED"}


class RUBBLE_OT_generate_final(PipelineRun, bpy.types.Operator):
    """Build, simulate, render passes, generate and composite the shot (Esc cancels, keeping finished work)"""

    bl_idname = "rubble.generate_final"
    bl_label = "Generate Final"
    panel_stage = "final"

    # The job of the run in progress in this Blender (Generate Final or one stage), if any.
    # Class-level, so every instance sees it: a second run would remove the scene the first
    # one renders from.
    running_job = None


class RUBBLE_OT_draft(PipelineRun, bpy.types.Operator):
    """A few-step draft of the whole shot at a reduced size (preset [draft]) into drafts/, shown as the
    sequencer strip "Draft"; the final frames are never touched (Esc cancels, keeping finished windows)"""

    bl_idname = "rubble.draft"
    bl_label = "Draft"
    panel_stage = "draft"
    stages = ("passes", "draft")


class RUBBLE_OT_estimate(PipelineRun, bpy.types.Operator):
    """Predict the shot's generation time and peak memory on this device from a short calibration
    (cached per device, model and size), before committing to Generate Final"""

    bl_idname = "rubble.estimate"
    bl_label = "Estimate"
    panel_stage = "estimate"
    stages = ("passes", "estimate")

    def _done_message(self) -> str:
        (result,) = self._job.results["estimate"]
        return f"Rubble: {result['message']}{estimate_memory(result)}"


def estimate_memory(result: dict) -> str:
    """", peak memory about 3.2 GB" from an estimate's result (nothing when it could not be measured)."""
    peak = result.get("peak_memory_bytes")
    return f", peak memory about {peak / 1e9:.1f} GB" if peak else ""


def _stage_operator(stage: str, description: str) -> type:
    return type(f"RUBBLE_OT_stage_{stage}", (PipelineRun, bpy.types.Operator), {
        "__doc__": description, "bl_idname": f"rubble.stage_{stage}", "bl_label": stage.title(),
        "panel_stage": stage, "stages": (stage,)})


# The per-stage buttons. The scene stages (build, trigger, bake) always run together first,
# skipped when fresh (pipeline.run): a built scene is only of use baked.
STAGE_OPERATORS = tuple(_stage_operator(stage, description) for stage, description in (
    ("build", "Build the building, its fracture, bonds and trigger, and bake it (skipped when up to date)"),
    ("bake", "Bake the simulation and save shot.blend (with the build, when it is not up to date)"),
    ("passes", "Render the data passes in a background Blender (Esc cancels, keeping finished frames)"),
    ("generate", "Generate the frames with the backend (Esc cancels, keeping finished windows)"),
    ("composite", "Put the clay and generated strips in the sequencer and render final.mp4"),
))
