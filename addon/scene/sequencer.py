"""Stage `composite`: the clay and generated strips in the sequencer, rendered to H.264.

Blender 5.0 calls the strip collection `strips` (`sequences` is gone); 4.2 has both.

Masked regeneration ([regenerate] roles) is composited by the backend (inference/regenerate.py), not
here: a Mask strip modifier (`strip.modifiers.new(type="MASK")`) segfaults bpy 5.0.1 (it works in
4.2.23; checked on both wheels). The generated strip is then already the composite over the plate,
and the feathered mask and the unmasked generated frames come as muted strips above it, for the
artist to blend again by hand.
"""
from __future__ import annotations

import os
from pathlib import Path

import bpy

from . import ownership

EDIT_SCENE = "Rubble Edit"
CLAY_CHANNEL, GENERATED_CHANNEL = 1, 2  # generated above clay: it covers it where present
# Masked regeneration's extras, muted (channel 3 is the drafts').
UNMASKED_CHANNEL, MASK_CHANNEL = 4, 5
CHANNEL_NAMES = {CLAY_CHANNEL: "Rubble Clay", GENERATED_CHANNEL: "Rubble Generated (AI)",
                 UNMASKED_CHANNEL: "Rubble Generated, unmasked (AI)", MASK_CHANNEL: "Rubble Regenerate Mask"}
# Drafts (inference/draft.py) on their own channel, named as drafts; a composite replaces them with the final.
DRAFT_CHANNEL, DRAFT_STRIP = 3, "Draft"
DRAFT_CHANNEL_NAME = "Rubble Draft (AI)"


def strip_collection(editor: bpy.types.SequenceEditor):
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def _image_strip(strips, name: str, files: list[Path], channel: int, frame_start: int):
    strip = strips.new_image(name=name, filepath=str(files[0]), channel=channel, frame_start=frame_start)
    for path in files[1:]:
        strip.elements.append(path.name)
    return ownership.own(strip, ownership.EDIT)


def show_pixels_unchanged(edit: bpy.types.Scene) -> None:
    """The generated PNGs are display-ready sRGB: the movie must carry their pixels as they
    are. The default view transform (AgX in 5.0, Filmic in 4.2) would tone-map them again."""
    view = edit.view_settings
    view.view_transform = "Standard"
    view.look = "None"
    view.exposure, view.gamma = 0.0, 1.0
    edit.display_settings.display_device = "sRGB"
    edit.sequencer_colorspace_settings.name = "sRGB"


def edit_scene() -> bpy.types.Scene:
    """The edit scene, kept across runs: the artist may have added strips of their own to it."""
    return ownership.find_scene(ownership.EDIT) or ownership.own(bpy.data.scenes.new(EDIT_SCENE), ownership.EDIT)


def remove_our_strips(edit: bpy.types.Scene) -> None:
    """Only the strips Rubble tagged go; the artist's own strips in the edit stay as they are."""
    if edit.sequence_editor is None:
        return
    strips = strip_collection(edit.sequence_editor)
    for strip in [s for s in strips if ownership.is_owned(s, ownership.EDIT)]:
        strips.remove(strip)


def build_edit(shot_scene: bpy.types.Scene, clay: list[Path], generated: list[Path],
               unmasked: list[Path] | None = None, masks: list[Path] | None = None) -> bpy.types.Scene:
    """Clay and generated strips in their named channels, replacing the previous run's (never
    stacking duplicates), with the shot's frame range, fps and resolution; with masked regeneration,
    the unmasked generated frames and the feathered masks as muted strips (the render is unchanged)."""
    edit = edit_scene()
    show_pixels_unchanged(edit)
    edit.frame_start, edit.frame_end = shot_scene.frame_start, shot_scene.frame_end
    edit.render.fps, edit.render.fps_base = shot_scene.render.fps, shot_scene.render.fps_base
    edit.render.resolution_x = shot_scene.render.resolution_x
    edit.render.resolution_y = shot_scene.render.resolution_y
    edit.render.resolution_percentage = 100
    editor = edit.sequence_editor_create()
    remove_our_strips(edit)
    for channel, name in CHANNEL_NAMES.items():
        editor.channels[channel].name = name
    strips = strip_collection(editor)
    _image_strip(strips, "Clay", clay, CLAY_CHANNEL, shot_scene.frame_start)
    _image_strip(strips, "Generated (AI)", generated, GENERATED_CHANNEL, shot_scene.frame_start)
    for name, files, channel in (("Generated, unmasked (AI)", unmasked, UNMASKED_CHANNEL),
                                 ("Regenerate Mask", masks, MASK_CHANNEL)):
        if files:
            _image_strip(strips, name, files, channel, shot_scene.frame_start).mute = True
    return edit


def show_draft(shot_scene: bpy.types.Scene, drafts: list[Path]) -> bpy.types.Scene:
    """The draft's frames as the strip "Draft" on its own channel of the edit, replacing the previous
    draft only: the clay and final strips (and the artist's) stay as they are."""
    edit = edit_scene()
    if edit.sequence_editor is None:  # no composite yet: the edit takes the shot's range, fps and size
        show_pixels_unchanged(edit)
        edit.frame_start, edit.frame_end = shot_scene.frame_start, shot_scene.frame_end
        edit.render.fps, edit.render.fps_base = shot_scene.render.fps, shot_scene.render.fps_base
        edit.render.resolution_x = shot_scene.render.resolution_x
        edit.render.resolution_y = shot_scene.render.resolution_y
    editor = edit.sequence_editor_create()
    strips = strip_collection(editor)
    for strip in [s for s in strips if s.name == DRAFT_STRIP and ownership.is_owned(s, ownership.EDIT)]:
        strips.remove(strip)
    editor.channels[DRAFT_CHANNEL].name = DRAFT_CHANNEL_NAME
    _image_strip(strips, DRAFT_STRIP, drafts, DRAFT_CHANNEL, shot_scene.frame_start)
    return edit


def render_movie(edit: bpy.types.Scene, path: Path) -> None:
    render = edit.render
    render.use_sequencer = True
    render.use_compositing = False
    settings = render.image_settings
    if hasattr(settings, "media_type"):  # Blender 5.0: must come before file_format
        settings.media_type = "VIDEO"
    settings.file_format = "FFMPEG"
    render.ffmpeg.format = "MPEG4"
    render.ffmpeg.codec = "H264"
    render.ffmpeg.constant_rate_factor = "HIGH"
    render.ffmpeg.audio_codec = "NONE"
    render.use_file_extension = False
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    render.filepath = str(tmp)
    with bpy.context.temp_override(scene=edit):  # as for the passes: the edit must be the context scene
        bpy.ops.render.render(animation=True)
    if not tmp.exists():
        raise RuntimeError(f"Blender's FFmpeg output did not write {tmp}; is this Blender built with FFmpeg?")
    os.replace(tmp, path)
