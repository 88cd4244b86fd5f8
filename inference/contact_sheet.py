"""contact_sheet.png: clay | depth | normal | generated for a few frames, to judge a shot at a glance,
and the temporal warp error (inference/temporal.py) in a line at the bottom once it is measured."""

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import blend, control, files, provenance, temporal
from .shot import Shot

COLUMNS = ("clay", "depth", "normal", "generated")
MAX_ROWS = 4
CELL_WIDTH = 256
LABEL_HEIGHT = 18
BANNER_HEIGHT = 36
BANNER = "RANDOM WEIGHTS — SMOKE TEST"
MISSING_GREY = (64, 64, 64)


def sampled_frames(shot: Shot) -> list[int]:
    frames = shot.frames
    picks = np.linspace(0, len(frames) - 1, min(MAX_ROWS, len(frames)))
    return [frames[int(round(p))] for p in picks]


def write(shot: Shot, smoke_test: bool | None = None, stability: dict | None = None):
    """`smoke_test`: whether the frames came from random weights; `stability`: the temporal warp
    error (inference/temporal.py). Both default to what provenance.json says."""
    width, height = shot.resolution
    cell = (CELL_WIDTH, max(1, round(height * CELL_WIDTH / width)))
    if smoke_test is None:
        smoke_test = provenance.read_smoke_test(shot)
    banner = BANNER_HEIGHT if smoke_test else 0
    rows = sampled_frames(shot)
    if stability is None:
        stability = (provenance.read(shot) or {}).get("temporal_warp_error")
    footer = LABEL_HEIGHT if stability else 0
    sheet = Image.new(
        "RGB", (cell[0] * len(COLUMNS), banner + LABEL_HEIGHT + len(rows) * (cell[1] + LABEL_HEIGHT) + footer), "black"
    )
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    if smoke_test:
        draw.rectangle([0, 0, sheet.width, BANNER_HEIGHT], fill=(200, 0, 0))
        # Pillow's built-in font has no em dash.
        draw.text((8, 6), BANNER.replace("—", "-"), fill="white", font=ImageFont.load_default(size=24))
    for column, name in enumerate(COLUMNS):
        draw.text((column * cell[0] + 4, banner + 2), name, fill="white", font=font)
    for row, frame in enumerate(rows):
        top = banner + LABEL_HEIGHT + row * (cell[1] + LABEL_HEIGHT)
        for column, name in enumerate(COLUMNS):
            sheet.paste(_cell(shot, name, frame, cell), (column * cell[0], top + LABEL_HEIGHT))
        draw.text((4, top + 2), f"frame {frame}", fill="white", font=font)
    if stability:
        draw.text((4, sheet.height - footer + 2), temporal.summary(stability), fill="white", font=font)
    path = shot.directory / "contact_sheet.png"
    files.write_png(path, sheet)
    return path


def _cell(shot: Shot, name: str, frame: int, size: tuple[int, int]) -> Image.Image:
    path = blend.frame_path(shot, frame) if name == "generated" else control.map_path(shot, name, frame)
    if not path.is_file():
        return Image.new("RGB", size, MISSING_GREY)
    image = Image.open(path)
    if name == "depth":  # 16-bit grey -> 8-bit for display
        image = Image.fromarray((np.asarray(image, dtype=np.float32) / 257.0).round().astype(np.uint8))
    return image.convert("RGB").resize(size, Image.Resampling.BILINEAR)
