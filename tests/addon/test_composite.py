"""Composite (issue 20 item 5): running it again replaces Rubble's strips and nothing else,
in named channels, with the shot's frame range and fps; shot.blend finds the frames after
the shot directory moves."""
import shutil
import types

import bpy
import numpy as np

from addon import pipeline
from addon.scene import ownership, sequencer

CLAY, GENERATED = (0.5, 0.5, 0.5), (0.8, 0.302, 0.102)
SIZE = (32, 16)


def _flat_png(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = bpy.data.images.new("flat", *SIZE)
    image.pixels.foreach_set(np.tile(np.array([*rgb, 1.0], np.float32), SIZE[0] * SIZE[1]))
    image.filepath_raw, image.file_format = str(path), "PNG"
    image.save()
    bpy.data.images.remove(image)


def _shot(shot_dir):
    """A shot scene of frames 5-7 at 12 fps, with clay and generated frames on disk."""
    pipeline.reset_session()
    shot = ownership.new_scene("Rubble", ownership.SHOT)
    shot.frame_start, shot.frame_end = 5, 7
    shot.render.fps = 12
    shot.render.resolution_x, shot.render.resolution_y = SIZE
    clay = [shot_dir / "control" / "clay" / f"{f:04d}.png" for f in range(5, 8)]
    generated = [shot_dir / "frames" / f"{f:04d}.png" for f in range(5, 8)]
    for path in clay:
        _flat_png(path, CLAY)
    for path in generated:
        _flat_png(path, GENERATED)
    return shot, clay, generated


def _strips(edit):
    return {s.name: s for s in sequencer.strip_collection(edit.sequence_editor)}


def _rendered_pixel(edit, path):
    edit.render.filepath = str(path)
    edit.render.image_settings.file_format = "PNG"
    edit.frame_set(6)
    with bpy.context.temp_override(scene=edit):
        bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(str(path))
    return np.array(image.pixels[:]).reshape(SIZE[1], SIZE[0], 4)[SIZE[1] // 2, SIZE[0] // 2, :3]


def test_composite_twice_replaces_our_strips_and_keeps_the_artists(tmp_path):
    shot_dir = tmp_path / "shot"
    shot, clay, generated = _shot(shot_dir)
    edit = sequencer.build_edit(shot, clay, generated)
    # The artist adds a title card of their own to the edit, in channel 3.
    args = {"length": 3} if bpy.app.version >= (5, 0) else {"frame_end": 8}
    title = sequencer.strip_collection(edit.sequence_editor).new_effect(
        name="My Title", type="COLOR", channel=3, frame_start=5, **args)
    title.color = (0.1, 0.2, 0.3)

    again = sequencer.build_edit(shot, clay, generated)

    assert again == edit, "a second composite made a new edit scene"
    strips = _strips(edit)
    assert sorted(strips) == ["Clay", "Generated (AI)", "My Title"], "strips stacked or lost"
    assert strips["My Title"].channel == 3
    np.testing.assert_allclose(strips["My Title"].color, (0.1, 0.2, 0.3), rtol=1e-6)
    assert not ownership.is_owned(strips["My Title"], ownership.EDIT)
    assert strips["Clay"].channel == sequencer.CLAY_CHANNEL
    assert strips["Generated (AI)"].channel == sequencer.GENERATED_CHANNEL
    assert edit.sequence_editor.channels[sequencer.CLAY_CHANNEL].name == "Rubble Clay"
    assert edit.sequence_editor.channels[sequencer.GENERATED_CHANNEL].name == "Rubble Generated (AI)"
    for strip in (strips["Clay"], strips["Generated (AI)"]):
        assert (strip.frame_final_start, strip.frame_final_end) == (5, 8)
    assert (edit.frame_start, edit.frame_end, edit.render.fps) == (5, 7, 12)

    # shot.blend refers to the frames relative to itself: move the folder, reopen, render.
    pipeline.write_shot_blend(types.SimpleNamespace(blend_path=shot_dir / "shot.blend", shot_dir=shot_dir))
    moved = tmp_path / "moved" / "shot"
    moved.parent.mkdir()
    shutil.move(shot_dir, moved)
    bpy.ops.wm.open_mainfile(filepath=str(moved / "shot.blend"))
    edit = ownership.find_scene(ownership.EDIT)
    strips = _strips(edit)
    assert sorted(strips) == ["Clay", "Generated (AI)", "My Title"]
    assert bpy.path.abspath(strips["Generated (AI)"].directory).rstrip("/") == str(moved / "frames")
    strips["My Title"].mute = True  # the title covers the frame; the generated image is under it
    np.testing.assert_allclose(_rendered_pixel(edit, tmp_path / "still.png"), GENERATED, atol=2 / 255)


def test_masked_regeneration_adds_the_mask_and_unmasked_frames_as_muted_strips(tmp_path):
    """The backend composites [regenerate] over the plate (a Mask modifier crashes bpy 5.0.1); the edit shows
    that composite, with the feathered mask and the unmasked frames muted above it for the artist."""
    shot_dir = tmp_path / "shot"
    shot, clay, generated = _shot(shot_dir)
    unmasked = [shot_dir / "regenerate" / "unmasked" / f"{f:04d}.png" for f in range(5, 8)]
    masks = [shot_dir / "regenerate" / "mask" / f"{f:04d}.png" for f in range(5, 8)]
    for path in unmasked:
        _flat_png(path, (0.1, 0.9, 0.1))
    for path in masks:
        _flat_png(path, (1.0, 1.0, 1.0))
    edit = sequencer.build_edit(shot, clay, generated, unmasked, masks)
    strips = _strips(edit)
    assert sorted(strips) == ["Clay", "Generated (AI)", "Generated, unmasked (AI)", "Regenerate Mask"]
    assert strips["Generated, unmasked (AI)"].channel == sequencer.UNMASKED_CHANNEL
    assert strips["Regenerate Mask"].channel == sequencer.MASK_CHANNEL
    assert strips["Regenerate Mask"].mute and strips["Generated, unmasked (AI)"].mute
    assert not strips["Generated (AI)"].mute
    assert edit.sequence_editor.channels[sequencer.MASK_CHANNEL].name == "Rubble Regenerate Mask"
    assert (strips["Regenerate Mask"].frame_final_start, strips["Regenerate Mask"].frame_final_end) == (5, 8)
    np.testing.assert_allclose(_rendered_pixel(edit, tmp_path / "still.png"), GENERATED, atol=2 / 255)

    again = sequencer.build_edit(shot, clay, generated)  # roles back to [] : the extras go
    assert sorted(_strips(again)) == ["Clay", "Generated (AI)"]
