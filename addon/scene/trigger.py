"""Stage `trigger`: what starts the collapse. The spine knows `column_removal`:
the front row of ground-floor columns is pulled out below the ground at `trigger.frame`."""
from __future__ import annotations

import bpy

from ..core.preset import Preset
from .ownership import own_object

DROP_FRAMES = 2  # a charge removes a column within about a tenth of a second at 24 fps


def front_ground_columns(pieces: list[bpy.types.Object]) -> list[bpy.types.Object]:
    """Ground-storey columns on the row nearest the camera (j == 0, the -Y side)."""
    return [p for p in pieces if tuple(p.get("rubble_column", (-1, -1, -1)))[::2] == (0, 0)]


def run(pieces: list[bpy.types.Object], preset: Preset) -> list[bpy.types.Object]:
    trigger = preset.trigger
    if trigger.kind == "none":
        return []
    removed = front_ground_columns(pieces)
    drop = preset.building.storey_height_m + 0.5
    for column in removed:
        # Animated ("kinematic") rigid bodies follow their keyframes; the bake stage reads this flag.
        column["rubble_kinematic"] = True
        column.keyframe_insert("location", frame=trigger.frame)
        column.location.z -= drop
        column.keyframe_insert("location", frame=trigger.frame + DROP_FRAMES)
        column.location.z += drop
        own_object(column)  # its new action is Rubble's too
    return removed
