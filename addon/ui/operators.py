"""Generate Final: runs the missing stages with a progress bar and Cancel (Esc).

Thin by design: check, read settings, drive `pipeline.run`. From the UI (invoke) it
advances one step per timer tick, so Blender never freezes; from a script or
`blender -b` (execute) it runs the same steps to the end.
"""
import bpy

from .. import pipeline
from ..core.backend import BackendError, find_backend_python
from ..core.preset import PresetError, load_preset
from .preferences import backend_python_preference

_FAILURES = (pipeline.StageError, BackendError, RuntimeError)


class RUBBLE_OT_generate_final(bpy.types.Operator):
    """Build, simulate, render passes, generate and composite the shot (Esc cancels, keeping finished work)"""

    bl_idname = "rubble.generate_final"
    bl_label = "Generate Final"

    _timer = None
    _job = None
    _steps = None

    def _prepare(self, context) -> bool:
        """Check everything that can be checked before any work starts."""
        settings = context.scene.rubble
        try:
            preset = load_preset(bpy.path.abspath(settings.preset_path))
            python = find_backend_python(backend_python_preference(context))
        except (PresetError, BackendError) as exc:
            self.report({"ERROR"}, str(exc))
            return False
        self._job = pipeline.ShotJob(
            shot_dir=bpy.path.abspath(settings.shot_dir), preset=preset, backend_python=str(python),
            weights=None if settings.weights == "PRESET" else settings.weights)
        self._steps = pipeline.run(self._job)
        return True

    def execute(self, context):
        if not self._prepare(context):
            return {"CANCELLED"}
        try:
            for _ in self._steps:
                pass
        except pipeline.Cancelled as exc:
            self.report({"WARNING"}, str(exc))
            return {"CANCELLED"}
        except _FAILURES as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Rubble: done, frames in {self._job.shot_dir}")
        return {"FINISHED"}

    def invoke(self, context, event):
        if not self._prepare(context):
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.progress_begin(0, 100)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            self._job.cancel_requested = True
            context.scene.rubble.status = "Cancelling: finishing the current step..."
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            progress = next(self._steps)
        except StopIteration:
            return self._finish(context, {"INFO"}, f"Rubble: done, frames in {self._job.shot_dir}")
        except pipeline.Cancelled as exc:
            return self._finish(context, {"WARNING"}, str(exc))
        except _FAILURES as exc:
            return self._finish(context, {"ERROR"}, str(exc))
        if progress.message:
            context.scene.rubble.status = f"{progress.stage}: {progress.message}"
        if progress.total:  # heartbeats (total 0) only keep the UI responsive
            index = pipeline.STAGES.index(progress.stage.split(":")[0])
            context.window_manager.progress_update(int(100 * (index + progress.fraction) / len(pipeline.STAGES)))
        return {"RUNNING_MODAL"}

    def _finish(self, context, level, message):
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        context.scene.rubble.status = message.splitlines()[0]
        self.report(level, message)
        return {"FINISHED"} if "INFO" in level else {"CANCELLED"}
