"""Generate Final inside an artist's file: the stages run with owns_session=False next to
the artist's own scenes, which Rubble must neither render from nor touch."""
import re

import bpy
import numpy as np
import OpenEXR
import pytest

from addon import pipeline
from addon.core.preset import load_preset
from addon.scene import ownership, sequencer
from conftest import SMALL_SHOT, run_cli, write_preset

# Kinds of data Rubble creates: after a rebuild none of them may hold an orphan or a `.001` name.
DATA = ("objects", "meshes", "cameras", "lights", "actions", "collections", "worlds")


def artist_file():
    """A fresh session whose scene, called "Rubble" like Rubble's own, holds the artist's work."""
    pipeline.reset_session()
    scene = bpy.context.scene
    scene.name = "Rubble"
    scene.frame_set(1)
    chair = bpy.data.objects.new("Chair", bpy.data.meshes.new("Chair"))
    scene.collection.objects.link(chair)
    other = bpy.data.scenes.new("Rubble Edit")  # also an artist's, despite the name
    other.collection.objects.link(bpy.data.objects.new("Table", bpy.data.meshes.new("Table")))
    return scene


def depth(path):
    for part in OpenEXR.File(str(path)).parts:
        for channel, data in part.channels.items():
            if channel.endswith("Depth.Z"):
                return np.array(data.pixels)
    raise AssertionError(f"no depth in {path}")


def in_session(shot_dir, preset, stages):
    job = pipeline.ShotJob(shot_dir=shot_dir, preset=preset, stages=stages, owns_session=False)
    list(pipeline.run(job))
    return job


def test_passes_in_an_artist_session_equal_the_cli(tmp_path):
    preset_path = write_preset(tmp_path / "p.toml", **SMALL_SHOT)
    cli = run_cli("shot", str(tmp_path / "cli"), "--preset", str(preset_path), "--stages", "passes")
    assert cli.returncode == 0, cli.stderr[-3000:]
    artist_file()
    in_session(tmp_path / "session", load_preset(preset_path), ("passes",))
    session = {f: depth(tmp_path / "session" / "passes" / f"{f:04d}.exr") for f in range(1, 5)}
    for f in range(2, 5):  # the camera pushes in and the front falls: every frame differs
        assert not np.array_equal(session[f], session[1]), f"frame {f} is a copy of frame 1"
    for f in range(1, 5):  # the same bake (deterministic pre-roll) and render: to the bit
        np.testing.assert_array_equal(session[f], depth(tmp_path / "cli" / "passes" / f"{f:04d}.exr"),
                                      err_msg=f"frame {f}")


def _rubble_names(kind):
    return sorted(block.name for block in ownership.owned(kind))


def _flat_png(path, rgb, size):
    image = bpy.data.images.new("flat", *size)
    image.pixels.foreach_set(np.tile(np.array([*rgb, 1.0], np.float32), size[0] * size[1]))
    image.filepath_raw, image.file_format = str(path), "PNG"
    image.save()
    bpy.data.images.remove(image)


def test_artist_data_survives_and_shot_blend_holds_only_the_shot(tmp_path):
    artist = artist_file()
    shot_dir = tmp_path / "shot"
    first = in_session(shot_dir, load_preset(write_preset(tmp_path / "a.toml", **SMALL_SHOT)),
                       ("build", "trigger", "bake"))
    # A second Generate with a changed building replaces the shot and nothing else.
    bigger = {**SMALL_SHOT, "building": {**SMALL_SHOT["building"], "storeys": 3}}
    job = in_session(shot_dir, load_preset(write_preset(tmp_path / "b.toml", **bigger)), ("build", "trigger", "bake"))
    assert first.scene_key() != job.scene_key()

    assert bpy.data.scenes.get("Rubble") == artist and "Chair" in artist.objects
    assert "Table" in bpy.data.scenes["Rubble Edit"].objects
    assert [s for s in bpy.data.scenes if ownership.is_owned(s, ownership.SHOT)] == [job.scene]
    third_storey = {o["rubble_element"] for o in job.scene.objects if o.get("rubble_kind") == "column"
                    and o["rubble_element"].startswith("Column.2.")}
    assert len(third_storey) == 6, sorted(third_storey)
    for attr in DATA:
        blocks = list(getattr(bpy.data, attr))
        assert not [b.name for b in blocks if re.search(r"\.\d{3}$", b.name)], f"{attr}: a rebuilt name got a suffix"
        assert not [b.name for b in blocks if b.users == 0], f"{attr}: orphans left behind"
    assert {o.name for o in bpy.data.objects} == {"Chair", "Table"} | {o.name for o in job.scene.objects}

    # The edit, with a flat colour standing in for generated frames (also pins the movie's colours).
    size = tuple(job.preset.shot.resolution)
    for f in job.shot_frames():
        for folder in ("control/clay", "frames"):
            (shot_dir / folder).mkdir(parents=True, exist_ok=True)
            _flat_png(shot_dir / folder / f"{f:04d}.png", FLAT, size)
    list(pipeline.stage_composite(job))
    edit = ownership.find_scene(ownership.EDIT)
    assert edit.view_settings.view_transform == "Standard"

    with bpy.data.libraries.load(str(shot_dir / "shot.blend")) as (stored, _):
        assert "Chair" not in stored.objects and "Table" not in stored.objects
        assert sorted(stored.scenes) == sorted(s.name for s in (job.scene, ownership.find_scene(ownership.EDIT)))
    bpy.ops.wm.open_mainfile(filepath=str(shot_dir / "shot.blend"))
    shot = ownership.find_scene(ownership.SHOT)
    assert shot.rigidbody_world.point_cache.is_baked
    strips = {s.name: s for s in sequencer.strip_collection(ownership.find_scene(ownership.EDIT).sequence_editor)}
    generated = strips["Generated (AI)"]
    assert generated.frame_final_duration == 4
    assert generated.directory.startswith("//"), "the strips' paths are not relative to shot.blend"
    assert bpy.path.abspath(generated.directory).rstrip("/") == str(shot_dir / "frames")


# A generated pixel that AgX (5.0) and Filmic (4.2) visibly shift: (0.800, 0.302, 0.102) came
# out (0.745, 0.314, 0.082) on 5.0 with the default view transform.
FLAT = (0.8, 0.302, 0.102)
# H.264 (yuv420p, crf "high") moves a flat colour by a few 8-bit levels at most.
H264_TOLERANCE = 4 / 255


def test_movie_keeps_the_generated_colours(tmp_path):
    pipeline.reset_session()
    shot = bpy.context.scene
    shot.frame_start, shot.frame_end = 1, 3
    shot.render.resolution_x, shot.render.resolution_y = 96, 64
    frames = [tmp_path / f"{f:04d}.png" for f in (1, 2, 3)]
    for path in frames:
        _flat_png(path, FLAT, (96, 64))
    sequencer.render_movie(sequencer.build_edit(shot, frames, frames), tmp_path / "final.mp4")
    png = bpy.data.images.load(str(frames[0]))
    movie = bpy.data.images.load(str(tmp_path / "final.mp4"))  # Blender decodes the first frame
    assert movie.source == "MOVIE" and tuple(movie.size) == (96, 64)
    expected = np.array(png.pixels[:]).reshape(64, 96, 4)[..., :3]
    decoded = np.array(movie.pixels[:]).reshape(64, 96, 4)[..., :3]
    np.testing.assert_allclose(decoded.mean(axis=(0, 1)), expected.mean(axis=(0, 1)), atol=H264_TOLERANCE)


def test_a_window_showing_the_shot_scene_is_moved_before_it_is_replaced():
    """The artist looks at Rubble's scene when the next Generate replaces it: the window
    falls back to the artist's scene instead of drawing a removed one."""
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    artist = bpy.context.scene
    window = bpy.context.window_manager.windows[0]
    shot = ownership.new_scene("Rubble", ownership.SHOT)
    window.scene = shot
    replacement = ownership.new_scene("Rubble", ownership.SHOT)
    assert window.scene == artist
    assert sorted(s.name for s in bpy.data.scenes) == sorted([artist.name, replacement.name])
