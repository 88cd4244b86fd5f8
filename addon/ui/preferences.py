"""Add-on preferences (machine-wide): the backend's interpreter and its setup (Install
Backend, Use Existing Python, Doctor, Copy Report); per-scene settings (travel with the .blend).

The setup commands run in the background (core/installer.py) while a modal timer shows
their output live; Esc or Cancel stops them. Headless (a script, `blender -b`) the same
operators run to the end."""
import tempfile
from pathlib import Path

import bpy

from ..core import backend, installer
from ..core.preset import DEFAULT_PRESET

# The extension's package name (bl_ext.<repo>.rubble): preferences are keyed by it. From a
# checkout enabled as the add-on `addon`, that name.
ADDON_PACKAGE = __package__.rpartition(".addon")[0] or __package__.partition(".")[0]
LOG_LINES = 12  # how much of a running setup's output the preferences show


class SetupState:
    """The setup command running or last run (one at a time), and the last Doctor report."""
    job: installer.CommandsRun | None = None
    title = ""
    report = ""


setup = SetupState()


def _preferences(context):
    addon = context.preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences if addon else None


def _log_folder() -> Path:
    """Beside the backend in the extension's user folder; a checkout's setup logs go to the temp folder."""
    if ADDON_PACKAGE.startswith("bl_ext."):
        return backend.default_env().parent / "logs"
    return Path(tempfile.gettempdir()) / "rubble-setup"


class _SetupOperator:
    """Start a setup command; modal from the UI (a timer polls it, Esc cancels), to the end headless."""

    def start(self, context) -> installer.CommandsRun | None:
        raise NotImplementedError

    def finished(self, context, job) -> None:
        raise NotImplementedError

    @classmethod
    def poll(cls, context):
        if setup.job is not None and setup.job.state == installer.RUNNING:
            cls.poll_message_set(f"{setup.title} is running: wait for it, or Cancel it.")
            return False
        return True

    def _begin(self, context) -> bool:
        job = self.start(context)
        if job is None:
            return False
        setup.job = job
        return True

    def execute(self, context):
        if not self._begin(context):
            return {"CANCELLED"}
        setup.job.wait()
        return self._end(context)

    def invoke(self, context, event):
        if context.window is None:
            return self.execute(context)
        if not self._begin(context):
            return {"CANCELLED"}
        self._timer = context.window_manager.event_timer_add(0.1, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            setup.job.cancel()
        elif event.type != "TIMER":
            return {"PASS_THROUGH"}
        state = setup.job.poll()
        for area in context.screen.areas if context.screen else ():
            if area.type == "PREFERENCES":
                area.tag_redraw()
        if state == installer.RUNNING:
            return {"RUNNING_MODAL"}
        context.window_manager.event_timer_remove(self._timer)
        return self._end(context)

    def _end(self, context):
        job = setup.job
        self.finished(context, job)
        return {"FINISHED"} if job.state == installer.DONE else {"CANCELLED"}


class RUBBLE_OT_install_backend(_SetupOperator, bpy.types.Operator):
    """Create the backend's own Python environment in Rubble's user folder and install the pinned packages
    (torch for this machine's CUDA, Metal or CPU; several GB from the internet)"""

    bl_idname = "rubble.install_backend"
    bl_label = "Install Backend"

    wheels: bpy.props.StringProperty(
        name="Wheels Folder", subtype="DIR_PATH", options={"SKIP_SAVE"},
        description="Install only from this folder of wheels (no internet): for offline machines and mirrors")

    def start(self, context):
        accelerator, seen = installer.detect_accelerator()
        plan = installer.plan_install(backend.default_env(), accelerator,
                                      find_links=Path(self.wheels) if self.wheels else None)
        refusal = installer.network_refusal(bpy.app.online_access, plan.needs_network)
        if refusal:
            self.report({"ERROR"}, refusal)
            return None
        setup.title = f"Install Backend ({accelerator}: {seen})"
        return installer.Install(plan, _log_folder() / "install.log")

    def finished(self, context, job):
        if job.state != installer.DONE:
            self.report({"WARNING"} if job.state == installer.CANCELLED else {"ERROR"},
                        f"Backend install {job.state}; the previous backend (if any) is unchanged. Log: {job.log_path}")
            return
        prefs = _preferences(context)
        if prefs is not None:
            prefs.backend_python = str(backend.env_python(job.plan.env))
        self.report({"INFO"}, f"Backend installed: {backend.env_python(job.plan.env)}")


class RUBBLE_OT_use_existing_python(_SetupOperator, bpy.types.Operator):
    """Use a Python environment that already has the backend's packages (a studio's); checked with the Doctor"""

    bl_idname = "rubble.use_existing_python"
    bl_label = "Use Existing Python"

    filepath: bpy.props.StringProperty(name="Python", subtype="FILE_PATH", options={"SKIP_SAVE"})

    def invoke(self, context, event):
        if not self.filepath and context.window is not None:
            context.window_manager.fileselect_add(self)  # comes back through execute
            return {"RUNNING_MODAL"}
        return super().invoke(context, event)

    def start(self, context):
        python = Path(bpy.path.abspath(self.filepath))
        if not python.is_file():
            self.report({"ERROR"}, f"{python} is not a file: pick the python executable of the environment.")
            return None
        setup.title = f"Doctor of {python}"
        return installer.Doctor(python, _log_folder() / "doctor.log")

    def finished(self, context, job):
        setup.report = job.report()
        if not job.ok:
            self.report({"ERROR"}, f"{job.python} cannot run the backend; the Doctor's report says why.")
            return
        prefs = _preferences(context)
        if prefs is not None:
            prefs.backend_python = str(job.python)
        self.report({"INFO"}, f"Backend Python set to {job.python}")


class RUBBLE_OT_doctor(_SetupOperator, bpy.types.Operator):
    """Check the backend: interpreter, torch, GPU and its memory, diffusers, weights present, free disk"""

    bl_idname = "rubble.doctor"
    bl_label = "Doctor"

    def start(self, context):
        try:
            python = backend.find_backend_python(backend_python_preference(context))
        except backend.BackendError as exc:
            setup.report = str(exc)
            self.report({"ERROR"}, str(exc).splitlines()[0])
            return None
        setup.title = f"Doctor of {python}"
        return installer.Doctor(python, _log_folder() / "doctor.log")

    def finished(self, context, job):
        setup.report = job.report()
        self.report({"INFO"} if job.ok else {"WARNING"}, "Doctor: " + ("backend ready" if job.ok else "problems found"))


class RUBBLE_OT_cancel_setup(bpy.types.Operator):
    """Stop the install or Doctor that is running (a cancelled install leaves the previous backend as it was)"""

    bl_idname = "rubble.cancel_setup"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return setup.job is not None and setup.job.state == installer.RUNNING

    def execute(self, context):
        setup.job.cancel()
        return {"FINISHED"}


class RUBBLE_OT_copy_report(bpy.types.Operator):
    """Copy the Doctor's report to the clipboard, for a bug report"""

    bl_idname = "rubble.copy_report"
    bl_label = "Copy Report"

    @classmethod
    def poll(cls, context):
        if not setup.report:
            cls.poll_message_set("Run the Doctor first.")
        return bool(setup.report)

    def execute(self, context):
        context.window_manager.clipboard = setup.report
        self.report({"INFO"}, "Doctor report copied to the clipboard.")
        return {"FINISHED"}


class RUBBLE_OT_start_warm_backend(bpy.types.Operator):
    """Start the warm backend (python -m inference serve): it keeps the model loaded between Generates; the
    add-on uses it while it runs (docs/contract.md, Warm backend)"""

    bl_idname = "rubble.start_warm_backend"
    bl_label = "Start Warm Backend"

    @classmethod
    def poll(cls, context):
        if backend.server_request("status") is not None:
            cls.poll_message_set("The warm backend is already running.")
            return False
        return True

    def execute(self, context):
        try:
            python = backend.find_backend_python(backend_python_preference(context))
        except backend.BackendError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        log = _log_folder() / "warm-backend.log"
        proc = backend.start_server(python, log)
        self.report({"INFO"}, f"Warm backend starting (pid {proc.pid}); its output: {log}")
        return {"FINISHED"}


class RUBBLE_OT_stop_warm_backend(bpy.types.Operator):
    """Stop the warm backend after its current run; Generate then starts a backend process per run again"""

    bl_idname = "rubble.stop_warm_backend"
    bl_label = "Stop Warm Backend"

    @classmethod
    def poll(cls, context):
        return backend.serve_file().exists()

    def execute(self, context):
        answer = backend.server_request("stop")
        self.report({"INFO"} if answer else {"WARNING"},
                    "Warm backend stopping." if answer else "No warm backend answered; nothing to stop.")
        return {"FINISHED"}


SETUP_OPERATORS = (RUBBLE_OT_install_backend, RUBBLE_OT_use_existing_python, RUBBLE_OT_doctor,
                   RUBBLE_OT_cancel_setup, RUBBLE_OT_copy_report, RUBBLE_OT_start_warm_backend,
                   RUBBLE_OT_stop_warm_backend)


class RubblePreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    backend_python: bpy.props.StringProperty(
        name="Backend Python", subtype="FILE_PATH",
        description="Interpreter of the backend's own environment (torch, diffusers); "
                    "empty: $RUBBLE_BACKEND_PYTHON, then the default environment (the extension's "
                    "user folder 'backend', or a checkout's .venv-inference)")

    def draw(self, context):
        draw_setup(self.layout, self)


def draw_setup(layout, prefs) -> None:
    layout.prop(prefs, "backend_python")
    row = layout.row(align=True)
    row.operator("rubble.install_backend", icon="IMPORT")
    row.operator("rubble.use_existing_python", icon="FILEBROWSER")
    row.operator("rubble.doctor", icon="CHECKMARK")
    row.operator("rubble.copy_report", icon="COPYDOWN")
    row = layout.row(align=True)
    status = backend.server_request("status") if backend.serve_file().exists() else None
    row.label(text=(f"Warm backend: running (pid {status.get('pid')}, models loaded {status.get('loads')})"
                    if status else "Warm backend: not running (each Generate starts a backend process)"))
    row.operator("rubble.start_warm_backend", icon="PLAY")
    row.operator("rubble.stop_warm_backend", icon="PAUSE")
    if not bpy.app.online_access:
        layout.label(text="Online access is off: Install Backend needs it (Preferences > System > Network).",
                     icon="INFO")
    job = setup.job
    if job is not None:
        box = layout.box()
        row = box.row()
        row.label(text=f"{setup.title}: {job.state}")
        if job.state == installer.RUNNING:
            row.operator("rubble.cancel_setup", icon="CANCEL")
        for line in job.lines[-LOG_LINES:]:
            box.label(text=line[:200])
    if setup.report:
        box = layout.box()
        for line in setup.report.splitlines():
            box.label(text=line[:200])


class RubbleSceneSettings(bpy.types.PropertyGroup):
    preset_path: bpy.props.StringProperty(name="Preset", subtype="FILE_PATH", default=str(DEFAULT_PRESET))
    shot_dir: bpy.props.StringProperty(name="Shot Folder", subtype="DIR_PATH", default="//rubble_shot")
    weights: bpy.props.EnumProperty(
        name="Weights", default="PRESET",
        items=[("PRESET", "From Preset", "Use the preset's model.weights"),
               ("auto", "Auto", "Real weights when on this machine, else the tiny smoke-test model"),
               ("pretrained", "Pretrained", "Real weights only; fail with instructions when missing"),
               ("tiny", "Tiny (smoke test)", "Random weights: checks the pipeline, not a look")])
    status: bpy.props.StringProperty(name="Status", default="")


def backend_python_preference(context) -> str:
    prefs = _preferences(context)
    return prefs.backend_python if prefs else ""


def default_backend_env() -> Path | None:
    """Installed as an extension: the backend environment lives in the extension's user
    folder, which survives reinstalling and updating (they replace the extension's own
    folder, and a system repository is read-only). From a checkout: None, so the
    checkout's .venv-inference (the Makefile's) stays the default."""
    if not ADDON_PACKAGE.startswith("bl_ext."):
        return None
    return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path="backend", create=True))
