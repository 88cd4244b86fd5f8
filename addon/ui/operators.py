"""Generate Final: runs the missing stages with a progress bar and Cancel (Esc).

Thin by design: check, read settings, drive `pipeline.run`. From the UI (invoke) it
advances one step per timer tick, so Blender never freezes; from a script or
`blender -b` (execute) it runs the same steps to the end. Every way out (done, Esc,
an error, an unexpected bug, Blender cancelling the operator) goes through `_end`,
which stops the timer and the progress bar, closes the job and says why.
"""
import os
import traceback

import bpy

from .. import pipeline
from ..core.backend import BackendError, find_backend_python
from ..core.preset import PresetError
from .preferences import backend_python_preference
from .presets import current_preset


class ShotFolderError(ValueError):
    """The shot folder setting does not name a folder we may write to."""


def resolve_shot_dir(setting: str) -> str:
    """The shot folder as an absolute path. A blend-relative path (the default
    `//rubble_shot`) in a file that was never saved would land in Blender's working
    directory (the home folder, `/` or Program Files), so it is refused instead."""
    if not setting.strip():
        raise ShotFolderError("No shot folder is set: pick a shot folder in the Rubble panel.")
    if setting.startswith("//") and not bpy.data.filepath:
        raise ShotFolderError(f"The shot folder {setting!r} is relative to the .blend file, which was never "
                              "saved: save the .blend first, or pick a shot folder.")
    path = bpy.path.abspath(setting)
    if not os.path.isabs(path):
        raise ShotFolderError(f"The shot folder {setting!r} is a relative path: pick a shot folder "
                              "(or save the .blend and use a path starting with //).")
    return path


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


class RUBBLE_OT_generate_final(bpy.types.Operator):
    """Build, simulate, render passes, generate and composite the shot (Esc cancels, keeping finished work)"""

    bl_idname = "rubble.generate_final"
    bl_label = "Generate Final"

    # The job of the Generate Final running in this Blender, if any. Class-level, so every
    # instance sees it: a second run would remove the scene the first one renders from.
    running_job = None

    _timer = None
    _job = None
    _steps = None

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
            shot_dir=shot_dir, preset=preset, backend_python=str(python),
            weights=None if settings.weights == "PRESET" else settings.weights)
        self._steps = pipeline.run(self._job)
        cls.running_job = self._job
        return True

    def _done_message(self) -> str:
        return f"Rubble: done, frames in {self._job.shot_dir}"

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
        return self._end(context, {"INFO"}, self._done_message())

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
                index = pipeline.STAGES.index(progress.stage.split(":")[0])
                context.window_manager.progress_update(int(100 * (index + progress.fraction) / len(pipeline.STAGES)))
        except StopIteration:
            return self._end(context, {"INFO"}, self._done_message())
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
