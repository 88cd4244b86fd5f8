"""control_sheet.png: what the diffusion model will see, before any GPU time is spent.

One row per sampled frame: clay | disparity | normals | flow | masks | each detector map of the
preset's [[controls]]. Written by the control stage whenever it writes maps (beside control/, so
the maps' folders hold maps only); a map not derived yet (a chunk that does not cover a sampled
frame) is a grey cell.

Flow uses the Middlebury colour coding (Baker, Scharstein, Lewis, Roth, Black, Szeliski, "A Database
and Evaluation Methodology for Optical Flow", IJCV 92(1), 2011; the wheel of their flow-code
colorcode.cpp): hue is the direction, saturation the length relative to the longest forward flow on
the sheet: no motion is white; rightward red, downward yellow, leftward cyan-blue, upward violet
(x right, y down).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import contact_sheet, control, detectors, files
from .shot import Shot

PANELS = ("clay", "disparity", "normals", "flow", "masks")
CELL_WIDTH = 192
LABEL_HEIGHT = 16
MISSING_GREY = (64, 64, 64)
# Colours of the roles in the masks panel (background black); other roles take the spare colours in order.
ROLE_COLOURS = {"building": (230, 140, 40), "ground": (70, 170, 80), "debris": (220, 40, 40)}
SPARE_COLOURS = ((60, 120, 230), (200, 80, 200), (240, 220, 60), (80, 210, 210), (250, 250, 250))
# Middlebury colour wheel segments (colorcode.cpp): red-yellow, yellow-green, green-cyan,
# cyan-blue, blue-magenta, magenta-red; lengths chosen there for perceptual spacing.
WHEEL_SEGMENTS = (15, 6, 4, 11, 13, 6)


@dataclass(frozen=True)
class Layout:
    columns: tuple[str, ...]
    frames: tuple[int, ...]  # one row each
    cell: tuple[int, int]  # width, height of a panel
    legend_height: int

    def origin(self, column: int, row: int) -> tuple[int, int]:
        """Top-left pixel of a panel."""
        return column * self.cell[0], LABEL_HEIGHT + row * (self.cell[1] + LABEL_HEIGHT) + LABEL_HEIGHT

    @property
    def size(self) -> tuple[int, int]:
        rows = len(self.frames)
        return self.cell[0] * len(self.columns), LABEL_HEIGHT + rows * (self.cell[1] + LABEL_HEIGHT) + self.legend_height


def path(shot: Shot) -> Path:
    return shot.directory / "control_sheet.png"


def layout(shot: Shot) -> Layout:
    width, height = shot.resolution
    return Layout(
        columns=PANELS + tuple(detectors.kinds_of(shot)),
        frames=tuple(contact_sheet.sampled_frames(shot)),
        cell=(CELL_WIDTH, max(1, round(height * CELL_WIDTH / width))),
        legend_height=LABEL_HEIGHT,
    )


def role_colours(names: list[str]) -> dict[str, tuple[int, int, int]]:
    spare = iter(SPARE_COLOURS * (1 + len(names) // len(SPARE_COLOURS)))
    return {name: ROLE_COLOURS.get(name) or next(spare) for name in names}


def write(shot: Shot) -> Path:
    at = layout(shot)
    roles = control.roles(shot)
    colours = role_colours(roles)
    forward = {f: control.flow_path(shot, "forward", f) for f in at.frames}
    flows = {f: np.load(p) for f, p in forward.items() if p.is_file()}
    longest = max([float(np.sqrt(np.square(v).sum(axis=-1).max())) for v in flows.values()] + [1.0])

    sheet = Image.new("RGB", at.size, "black")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for column, name in enumerate(at.columns):
        label = f"flow (max {longest:.1f} px)" if name == "flow" else name
        draw.text((column * at.cell[0] + 4, 2), label, fill="white", font=font)
    for row, frame in enumerate(at.frames):
        x, y = at.origin(0, row)
        draw.text((4, y - LABEL_HEIGHT + 2), f"frame {frame}", fill="white", font=font)
        for column, name in enumerate(at.columns):
            panel = _panel(shot, name, frame, flows.get(frame), longest, roles, colours, at.cell)
            sheet.paste(panel or Image.new("RGB", at.cell, MISSING_GREY), at.origin(column, row))
    x = 4
    legend_top = at.size[1] - at.legend_height + 2
    for role in roles:
        draw.rectangle([x, legend_top + 2, x + 8, legend_top + 10], fill=colours[role])
        draw.text((x + 12, legend_top), role, fill="white", font=font)
        x += 20 + 7 * len(role)
    out = path(shot)
    # One row filter and zlib level 1: Pillow's default (level 6, a filter tried per row) took 27 ms,
    # a fifth of the sheet, for a file 1.3x smaller.
    files.write_png_pixels(out, np.asarray(sheet), "up", 1)
    return out


def _panel(shot, name, frame, flow, longest, roles, colours, cell) -> Image.Image | None:
    """One panel at the cell's size, or None when its map is not there. Each map is brought down to
    the cell before it is coloured: colouring the full resolution was most of the sheet's time."""
    bilinear, nearest = Image.Resampling.BILINEAR, Image.Resampling.NEAREST
    if name == "flow":
        if flow is None:
            return None
        small = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(flow[..., c])).resize(cell, bilinear))
                          for c in range(2)], axis=-1)  # mode "F": float32 in, float32 out
        return Image.fromarray(flow_colours(small, longest))
    if name == "masks":
        paths = {role: control.mask_path(shot, role, frame) for role in roles}
        if not all(p.is_file() for p in paths.values()):
            return None
        rgb = np.zeros((cell[1], cell[0], 3), np.uint8)
        for role, mask_file in paths.items():  # a pixel has at most one role
            rgb[np.asarray(Image.open(mask_file).resize(cell, nearest)) > 127] = colours[role]
        return Image.fromarray(rgb)
    kind = {"disparity": "depth", "normals": "normal"}.get(name, name)
    map_file = control.map_path(shot, kind, frame)
    if not map_file.is_file():
        return None
    image = Image.open(map_file)
    if kind == "depth":  # 16-bit grey -> 8-bit for display
        image = Image.fromarray((np.asarray(image, dtype=np.float32) / 257.0).round().astype(np.uint8))
    return image.convert("RGB").resize(cell, bilinear)


def colour_wheel() -> np.ndarray:
    """The Middlebury wheel: (55, 3) float RGB in 0..255, red first (colorcode.cpp's makecolorwheel)."""
    red_yellow, yellow_green, green_cyan, cyan_blue, blue_magenta, magenta_red = WHEEL_SEGMENTS
    ramps = []
    for length, start, channel, rising in (
        (red_yellow, (255, 0, 0), 1, True), (yellow_green, (255, 255, 0), 0, False),
        (green_cyan, (0, 255, 0), 2, True), (cyan_blue, (0, 255, 255), 1, False),
        (blue_magenta, (0, 0, 255), 0, True), (magenta_red, (255, 0, 255), 2, False),
    ):
        ramp = np.tile(np.array(start, np.float64), (length, 1))
        step = np.floor(255.0 * np.arange(length) / length)
        ramp[:, channel] = step if rising else 255.0 - step
        ramps.append(ramp)
    return np.concatenate(ramps)


def flow_colours(flow: np.ndarray, longest: float) -> np.ndarray:
    """Flow (H, W, 2), pixels, x right, y down -> uint8 RGB in the Middlebury coding, lengths / longest."""
    wheel = colour_wheel()
    u, v = flow[..., 0] / longest, flow[..., 1] / longest
    radius = np.hypot(u, v)
    angle = np.arctan2(-v, -u) / np.pi  # colorcode.cpp: atan2(-fy, -fx) / pi, in [-1, 1]
    position = (angle + 1.0) / 2.0 * (len(wheel) - 1)
    k0 = np.floor(position).astype(int)
    k1 = (k0 + 1) % len(wheel)
    f = (position - k0)[..., None]
    colour = ((1.0 - f) * wheel[k0] + f * wheel[k1]) / 255.0
    r = radius[..., None]
    # Saturation grows with the length; beyond the longest the colour is darkened (colorcode.cpp).
    colour = np.where(r <= 1.0, 1.0 - r * (1.0 - colour), colour * 0.75)
    return np.round(colour * 255.0).astype(np.uint8)
