"""The Preset sub-panel and its operators: pick a shipped or user preset, edit its essentials (look,
building, first trigger frame, camera) in place, save as, duplicate, import, export. Operators are
thin: they call core/preset_library.py and report; the panel only draws.

The picked preset is the scene's `rubble.preset_path`. Its essentials (`ESSENTIALS`) are copied
into `scene.rubble_look` when it is picked; what the artist changes there is applied on
top of the file by `current_preset`, which Generate Final runs with. Save As keeps the changes
as a user preset; picking or reloading a preset discards them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import bpy

from ..core import model_family
from ..core.camera import CameraSettings
from ..core.checks import MAX_FRAME
from ..core.destruction.materials import MATERIALS
from ..core.preset import Preset, PresetError, load_preset, preset_from_dict
from ..core.preset_library import LibraryError, PresetLibrary, export_file, write_preset
from .preferences import ADDON_PACKAGE

INT_MAX = 2**31 - 1  # an IntProperty is a signed 32-bit int; a preset's seed may reach 2**32 - 1


def user_preset_dir() -> Path:
    """Installed as an extension: the extension's user folder `presets`, which updates and
    reinstalls keep. From a checkout: Blender's user config folder."""
    if ADDON_PACKAGE.startswith("bl_ext."):
        return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path="presets", create=True))
    return Path(bpy.utils.user_resource("CONFIG", path="rubble_presets"))


_libraries: dict[Path, PresetLibrary] = {}


def library() -> PresetLibrary:
    folder = user_preset_dir()
    if folder not in _libraries:  # one per folder: it caches what each file's title is
        _libraries[folder] = PresetLibrary(folder)
    return _libraries[folder]


def preset_path(context) -> Path | None:
    setting = context.scene.rubble.preset_path
    return Path(bpy.path.abspath(setting)).resolve() if setting.strip() else None


# --- the look edited in place ----------------------------------------------------------

# [camera] as the panel edits it: every key (core/camera.py), each a float.
CAMERA_KEYS = tuple(f.name for f in dataclasses.fields(CameraSettings))

# The essentials edited in place: panel property -> preset key. "triggers.frame" is the first
# trigger's frame; moving it moves every trigger by as much, so a sequence keeps its timing.
ESSENTIALS = {"prompt": "look.prompt", "negative_prompt": "look.negative_prompt", "seed": "shot.seed",
              "strength": "look.strength", "family": "model.family", "storeys": "building.storeys",
              "bays_x": "building.bays_x", "bays_y": "building.bays_y", "material": "building.material",
              "trigger_frame": "triggers.frame",
              **{key: f"camera.{key}" for key in CAMERA_KEYS}}
LOOK_KEYS = ("prompt", "negative_prompt", "seed", "strength", "family")
BUILDING_KEYS = ("storeys", "bays_x", "bays_y", "material", "trigger_frame")


def _look_values(preset: Preset) -> dict:
    values = {"prompt": preset.look.prompt, "negative_prompt": preset.look.negative_prompt,
              "seed": min(preset.shot.seed, INT_MAX), "strength": preset.look.strength,
              "family": preset.model.family, "storeys": preset.building.storeys, "bays_x": preset.building.bays_x,
              "bays_y": preset.building.bays_y, "material": preset.building.material,
              **{key: getattr(preset.camera, key) for key in CAMERA_KEYS}}
    if preset.triggers:  # a preset without triggers has no trigger frame to move
        values["trigger_frame"] = preset.triggers[0].frame
    return values


def _panel_value(look, key: str):
    """The panel's value as the preset would hold it: Blender keeps floats in single precision, so
    0.6 reads back as 0.6000000238; six decimals are what the field shows and the artist typed."""
    value = getattr(look, key)
    return round(value, 6) if isinstance(value, float) else value


def fill_look(context, preset: Preset, path: Path) -> None:
    look = context.scene.rubble_look
    for key, value in _look_values(preset).items():
        setattr(look, key, value)
    look.has_triggers = bool(preset.triggers)
    look.source = str(path)


def edits(context, preset: Preset) -> dict:
    """What the artist changed in the panel, as preset keys -> values ({} when nothing was,
    or when the panel holds another preset's look)."""
    look = context.scene.rubble_look
    path = preset_path(context)
    if path is None or look.source != str(path):
        return {}
    return {ESSENTIALS[k]: _panel_value(look, k) for k, v in _look_values(preset).items() if _panel_value(look, k) != v}


def current_preset(context) -> Preset:
    """The picked preset with the panel's edits, validated like a file (PresetError names the key)."""
    path = preset_path(context)
    if path is None:
        raise PresetError("(none)", ["no preset is picked: pick one in the Rubble panel's Preset section"])
    preset = load_preset(path)
    changed = edits(context, preset)
    if not changed:
        return preset
    data = preset.to_dict()
    for dotted, value in changed.items():
        section, key = dotted.split(".")
        if section == "triggers":
            shift = value - data["triggers"][0]["frame"]
            for trigger in data["triggers"]:
                trigger["frame"] += shift
        else:
            data[section][key] = value
    return preset_from_dict(data, source=f"{path} with the panel's edits")


def _select(context, path: Path) -> None:
    context.scene.rubble.preset_path = str(path)
    fill_look(context, load_preset(path), Path(path).resolve())


def _fail(operator, exc: Exception) -> set:
    operator.report({"ERROR"}, str(exc))
    return {"CANCELLED"}


# --- operators -----------------------------------------------------------------------

_menu_items: list = []  # Blender keeps no reference to dynamic enum items: we must


def _preset_items(self, context):
    _menu_items.clear()
    for number, entry in enumerate(library().entries()):
        where = "shipped with Rubble" if entry.shipped else "your preset"
        description = f"{entry.title} ({where})" if not entry.problem else entry.problem
        icon = "ERROR" if entry.problem else ("PRESET" if entry.shipped else "USER")
        _menu_items.append((entry.key, entry.name, description, icon, number))
    return _menu_items


class RUBBLE_OT_preset_load(bpy.types.Operator):
    """Use this preset (discards the look edited in the panel)"""

    bl_idname = "rubble.preset_load"
    bl_label = "Load Preset"
    bl_options = {"REGISTER", "UNDO"}

    key: bpy.props.EnumProperty(name="Preset", items=_preset_items)

    def execute(self, context):
        try:
            entry = library().find(self.key)
            _select(context, entry.path)
        except (LibraryError, PresetError) as exc:
            return _fail(self, exc)
        self.report({"INFO"}, f"Preset {entry.name}: {entry.title}")
        return {"FINISHED"}


class RUBBLE_OT_preset_reload(bpy.types.Operator):
    """Read the picked preset's file again (discards the look edited in the panel)"""

    bl_idname = "rubble.preset_reload"
    bl_label = "Reload Preset"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        path = preset_path(context)
        try:
            if path is None:
                raise PresetError("(none)", ["no preset is picked"])
            _select(context, path)
        except PresetError as exc:
            return _fail(self, exc)
        return {"FINISHED"}


_NAME = {"name": "Name", "description": "The preset's name, also its file name"}
_OVERWRITE = {"name": "Overwrite", "description": "Replace your preset of the same name"}


class _Named:
    """Asks for a name first (declared per class: Blender reads each operator's own annotations)."""

    def invoke(self, context, event):
        path = preset_path(context)
        if not self.name and path is not None:
            self.name = f"{path.stem} copy"
        return context.window_manager.invoke_props_dialog(self)


class RUBBLE_OT_preset_save_as(_Named, bpy.types.Operator):
    """Save the picked preset, with the look edited in the panel, as one of your presets"""

    bl_idname = "rubble.preset_save_as"
    bl_label = "Save Preset As"

    name: bpy.props.StringProperty(**_NAME)
    overwrite: bpy.props.BoolProperty(**_OVERWRITE)

    def execute(self, context):
        try:
            entry = library().save(current_preset(context), self.name, overwrite=self.overwrite)
            _select(context, entry.path)
        except (LibraryError, PresetError) as exc:
            return _fail(self, exc)
        self.report({"INFO"}, f"Saved {entry.path}")
        return {"FINISHED"}


class RUBBLE_OT_preset_duplicate(_Named, bpy.types.Operator):
    """Copy the picked preset's file, comments included, as one of your presets (edits in the panel are not copied: use Save As)"""

    bl_idname = "rubble.preset_duplicate"
    bl_label = "Duplicate Preset"

    name: bpy.props.StringProperty(**_NAME)

    def execute(self, context):
        lib = library()
        path = preset_path(context)
        try:
            if path is None:
                raise LibraryError("no preset is picked: pick one to duplicate")
            entry = lib.entry_for(path)
            copy = (lib.duplicate(entry.key, self.name) if entry is not None
                    else lib.import_file(path, self.name))
            _select(context, copy.path)
        except (LibraryError, PresetError) as exc:
            return _fail(self, exc)
        self.report({"INFO"}, f"Duplicated as {copy.path}")
        return {"FINISHED"}


class RUBBLE_OT_preset_import(bpy.types.Operator):
    """Add a shared .toml preset to your presets (it is checked first; nothing in it is executed)"""

    bl_idname = "rubble.preset_import"
    bl_label = "Import Preset"

    filepath: bpy.props.StringProperty(subtype="FILE_PATH")
    filter_glob: bpy.props.StringProperty(default="*.toml", options={"HIDDEN"})
    overwrite: bpy.props.BoolProperty(**_OVERWRITE)

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        try:
            entry = library().import_file(Path(bpy.path.abspath(self.filepath)), overwrite=self.overwrite)
            _select(context, entry.path)
        except (LibraryError, PresetError) as exc:
            return _fail(self, exc)
        self.report({"INFO"}, f"Imported {entry.name}")
        return {"FINISHED"}


class RUBBLE_OT_preset_export(bpy.types.Operator):
    """Write the picked preset, with the look edited in the panel, as a single .toml file to share"""

    bl_idname = "rubble.preset_export"
    bl_label = "Export Preset"

    filepath: bpy.props.StringProperty(subtype="FILE_PATH")
    filter_glob: bpy.props.StringProperty(default="*.toml", options={"HIDDEN"})
    check_existing: bpy.props.BoolProperty(default=True, options={"HIDDEN"})  # the file browser warns

    def invoke(self, context, event):
        path = preset_path(context)
        if not self.filepath and path is not None:
            self.filepath = path.name
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        destination = Path(bpy.path.abspath(self.filepath))
        if destination.suffix.lower() != ".toml":
            destination = destination.with_name(destination.name + ".toml")
        try:
            preset = current_preset(context)
            if edits(context, load_preset(preset_path(context))):
                written = write_preset(preset, destination)
            else:  # unchanged: the file as it is, comments included
                written = export_file(preset_path(context), destination)
        except (LibraryError, PresetError) as exc:
            return _fail(self, exc)
        self.report({"INFO"}, f"Exported {written}")
        return {"FINISHED"}


# --- the panel -------------------------------------------------------------------------

def _camera_property(key: str, name: str, description: str) -> dict:
    """A FloatProperty's settings for a [camera] key: its range is the schema's (core/camera.py)."""
    meta = {f.name: f.metadata for f in dataclasses.fields(CameraSettings)}[key]
    return {"name": name, "description": description, "min": meta["min"], "max": meta["max"], "precision": 2}


class RubbleLook(bpy.types.PropertyGroup):
    prompt: bpy.props.StringProperty(name="Prompt", description="What the generated frames show ([look] prompt)")
    negative_prompt: bpy.props.StringProperty(name="Negative", description="What they must not show "
                                                                           "([look] negative_prompt)")
    seed: bpy.props.IntProperty(name="Seed", min=0, max=INT_MAX,
                                description="The shot's seed ([shot] seed): the fracture pattern and the "
                                            "generation noise derive from it, so a new seed rebuilds the shot")
    strength: bpy.props.FloatProperty(name="Strength", min=0.0, max=1.0, default=1.0, precision=2,
                                      description="How far from the clay render the generation may go ([look] "
                                                  "strength): 1 = text-to-video, lower keeps the sim's composition")
    family: bpy.props.EnumProperty(
        name="Model", items=[(name, name, f"[model] family = \"{name}\"") for name in model_family.FAMILIES],
        description="The model family ([model] family); a family needs its own sizes, windows and controls, "
                    "so switching may be refused with what to change (the Wan presets have them)")
    storeys: bpy.props.IntProperty(name="Storeys", min=1, max=60, description="[building] storeys")
    bays_x: bpy.props.IntProperty(name="Bays X", min=1, max=40, description="[building] bays_x: bays along the facade")
    bays_y: bpy.props.IntProperty(name="Bays Y", min=1, max=40, description="[building] bays_y: bays in depth")
    material: bpy.props.EnumProperty(name="Material", items=[(name, name.title(), f"[building] material = \"{name}\"")
                                                             for name in MATERIALS],
                                     description="What the frame is built of: its strength decides what breaks")
    trigger_frame: bpy.props.IntProperty(name="Trigger Frame", min=0, max=MAX_FRAME,
                                         description="The first trigger's frame ([[triggers]] frame); the others "
                                                     "move by as much, so a sequence keeps its timing")
    lens_mm: bpy.props.FloatProperty(**_camera_property("lens_mm", "Lens (mm)", "Focal length in millimetres ([camera] "
                                                       "lens_mm): 35 is slightly wide, 50 normal, 85 and up tele"))
    orbit_deg: bpy.props.FloatProperty(**_camera_property("orbit_deg", "Orbit (°)", "Turn the view around the "
                                                          "building ([camera] orbit_deg): 0 is the three-quarter "
                                                          "front view, positive goes counter-clockwise from above"))
    elevation_deg: bpy.props.FloatProperty(**_camera_property("elevation_deg", "Elevation (°)", "Raise (positive) "
                                                              "or lower the view ([camera] elevation_deg), added "
                                                              "to the default view's angle"))
    distance_scale: bpy.props.FloatProperty(**_camera_property("distance_scale", "Distance", "Scale the camera's "
                                                               "distance ([camera] distance_scale): with a longer "
                                                               "lens, lens / 35 keeps the framing"))
    push_in: bpy.props.FloatProperty(**_camera_property("push_in", "Push In", "The fraction of the distance the "
                                                        "camera moves in over the shot ([camera] push_in): 0 is "
                                                        "locked off, negative pulls back"))
    has_triggers: bpy.props.BoolProperty(options={"HIDDEN"})  # the preset has a trigger frame to move
    source: bpy.props.StringProperty(options={"HIDDEN"})  # the preset file these values came from


class RUBBLE_PT_presets(bpy.types.Panel):
    bl_label = "Preset"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Rubble"
    bl_parent_id = "RUBBLE_PT_shot"  # ui/panel.py's sidebar panel

    def draw(self, context):
        layout = self.layout
        path = preset_path(context)
        entry = library().entry_for(path) if path is not None else None
        label = entry.name if entry is not None else (path.name if path is not None else "Pick a preset")
        row = layout.row(align=True)
        row.operator_menu_enum("rubble.preset_load", "key", text=label, icon="PRESET")
        row.operator("rubble.preset_reload", text="", icon="FILE_REFRESH")
        if entry is not None and entry.problem:
            layout.label(text=entry.problem, icon="ERROR")
        look = context.scene.rubble_look
        if path is not None and look.source == str(path):
            column = layout.column()
            for key in LOOK_KEYS:
                column.prop(look, key)
            column = layout.column(heading="Building")
            for key in BUILDING_KEYS:
                if key != "trigger_frame" or look.has_triggers:
                    column.prop(look, key)
            column = layout.column(heading="Camera")
            for key in CAMERA_KEYS:
                column.prop(look, key)
        elif path is not None:
            layout.operator("rubble.preset_reload", text="Edit Look Here", icon="GREASEPENCIL")
        row = layout.row(align=True)
        row.operator("rubble.preset_save_as", text="Save As", icon="FILE_TICK")
        row.operator("rubble.preset_duplicate", text="Duplicate", icon="DUPLICATE")
        row = layout.row(align=True)
        row.operator("rubble.preset_import", text="Import", icon="IMPORT")
        row.operator("rubble.preset_export", text="Export", icon="EXPORT")


class RUBBLE_PT_presets_sequencer(RUBBLE_PT_presets):
    """The same sub-panel in the sequencer's sidebar, under its Rubble panel."""

    bl_space_type = "SEQUENCE_EDITOR"
    bl_parent_id = "RUBBLE_PT_shot_sequencer"


_classes = (RubbleLook, RUBBLE_OT_preset_load, RUBBLE_OT_preset_reload, RUBBLE_OT_preset_save_as,
            RUBBLE_OT_preset_duplicate, RUBBLE_OT_preset_import, RUBBLE_OT_preset_export, RUBBLE_PT_presets,
            RUBBLE_PT_presets_sequencer)


def register():
    for cls in _classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.rubble_look = bpy.props.PointerProperty(type=RubbleLook)


def unregister():
    del bpy.types.Scene.rubble_look
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
    _libraries.clear()
