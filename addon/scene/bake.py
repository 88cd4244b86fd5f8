"""Stage `bake`'s record of the camera at every frame, for shot.json (the simulation and
its baked cache are addon/scene/destruction)."""
from __future__ import annotations

from typing import Iterator

import bpy

from ..core.shot_manifest import camera_record


def camera_records(scene: bpy.types.Scene) -> Iterator[tuple[int, dict]]:
    """The camera at each frame, as the backend needs it to turn normals into camera space."""
    cam = scene.camera
    for frame in range(scene.frame_start, scene.frame_end + 1):
        scene.frame_set(frame)
        data = cam.data
        yield frame, camera_record(cam.matrix_world, data.lens, data.sensor_width, data.sensor_height,
                                   data.sensor_fit, data.clip_start, data.clip_end)
