"""The preset's `[camera]` section: the shot's camera as an artist frames it, and its path.

The defaults are Rubble's original camera: a 35 mm lens, a three-quarter view from the front
(-Y) aimed at 40 % of the building's height, pushing in over the shot by 10 % of its distance.
The other keys turn, raise and scale that view, so a preset without `[camera]` keeps its shot.

bpy-free: stage `build` (scene/build.py) places the camera on the path computed here, and the
preset check uses the same path to refuse a camera below the ground or inside the building.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

Vec3 = tuple[float, float, float]

# Blender's default camera clip_start; a camera nearer the ground than this sees it cut open.
CLIP_START_M = 0.1


def _range(lo=None, hi=None, **extra):
    return {"min": lo, "max": hi, **extra}


@dataclass(frozen=True)
class CameraSettings:
    # Focal length on Blender's default 36 mm sensor: 35 is a slight wide angle, 50 normal, 85+ tele.
    lens_mm: float = field(default=35.0, metadata=_range(10.0, 300.0))
    # Turns the default three-quarter view around the building (about its vertical axis through
    # the aim point); positive is counter-clockwise seen from above, towards the building's +X side.
    orbit_deg: float = field(default=0.0, metadata=_range(-180.0, 180.0))
    # Raises (positive) or lowers the view, added to the default view's angle above the aim point
    # (about 5° for the shipped presets): 60 looks down on the roof.
    elevation_deg: float = field(default=0.0, metadata=_range(-45.0, 80.0))
    # Multiplies the camera's distance from the aim point; with a longer lens, lens_mm / 35 keeps the framing.
    distance_scale: float = field(default=1.0, metadata=_range(0.25, 4.0))
    # The fraction of the distance covered over the shot: 0 is locked off, negative pulls back.
    push_in: float = field(default=0.1, metadata=_range(-1.0, 0.9))


SECTIONS = {"camera": CameraSettings}


def building_extent(building) -> Vec3:
    """The building's width (X), depth (Y) and height (Z) in metres, from `[building]`."""
    return (building.bays_x * building.bay_width_m, building.bays_y * building.bay_width_m,
            building.storeys * building.storey_height_m)


@dataclass(frozen=True)
class CameraPath:
    target: Vec3  # the point the camera looks at, all shot long
    start: Vec3   # where it stands at the shot's first frame
    end: Vec3     # and at its last
    clip_end: float


def camera_path(extent: Vec3, camera: CameraSettings) -> CameraPath:
    """Where the camera stands and looks for a building of `extent` (building_extent)."""
    x, y, z = extent
    target = (0.0, 0.0, z * 0.4)
    # The default view, as Rubble always framed it: the width or the height (whichever is larger)
    # fills the 35 mm frame from the front, standing in front of the building's front face.
    distance = max(x, z) * 1.45 + y / 2
    offset = (x * 0.45, -distance, z * 0.55 - target[2])
    horizontal = math.hypot(offset[0], offset[1])
    radius = math.hypot(horizontal, offset[2]) * camera.distance_scale
    azimuth = math.atan2(offset[1], offset[0]) + math.radians(camera.orbit_deg)
    elevation = math.atan2(offset[2], horizontal) + math.radians(camera.elevation_deg)
    offset = (radius * math.cos(elevation) * math.cos(azimuth), radius * math.cos(elevation) * math.sin(azimuth),
              radius * math.sin(elevation))
    start = tuple(t + o for t, o in zip(target, offset))
    end = tuple(t + o * (1.0 - camera.push_in) for t, o in zip(target, offset))
    return CameraPath(target, start, end, clip_end=distance * camera.distance_scale * 10)


def _inside(point: Vec3, extent: Vec3) -> bool:
    x, y, z = extent
    return abs(point[0]) < x / 2 and abs(point[1]) < y / 2 and 0.0 <= point[2] <= z


def cross_checks(preset) -> list[str]:
    """A camera under the ground or inside the building frames nothing: refuse it, naming what to
    change. The path is a straight line towards the aim point (inside the building), so its ends
    decide: the nearer one is the first to enter the building."""
    extent = building_extent(preset.building)
    path = camera_path(extent, preset.camera)
    problems = []
    for frame, point in ((preset.shot.frame_start, path.start), (preset.shot.frame_end, path.end)):
        if point[2] < CLIP_START_M:
            problems.append(f"camera.elevation_deg: {preset.camera.elevation_deg} puts the camera {point[2]:.2f} m "
                            f"high at frame {frame}, at or below the ground; raise elevation_deg (or lower "
                            "distance_scale)")
            break
    near = path.end if preset.camera.push_in >= 0 else path.start
    if not problems and _inside(near, extent):
        problems.append(f"camera.distance_scale: {preset.camera.distance_scale} with push_in {preset.camera.push_in} "
                        f"puts the camera inside the building ({extent[0]:g} x {extent[1]:g} x {extent[2]:g} m) by "
                        "the end of the shot; raise distance_scale or lower push_in")
    return problems
