"""How much disk the passes take, so the passes stage can refuse a render that would fill it.

Uncompressed passes (the default) have a size known in advance; a compressed file's size depends
on the scene (a plain test scene zips to a sixth of the collapse's ratio), so for those the stage
does not refuse and the advice quotes the collapse's ratio as "about".

bpy-free. The channels are docs/contract.md's ("passes/NNNN.exr"): Depth.Z, Normal.XYZ,
Vector.XYZW and Object Index.X as float32, Combined.RGBA and (when the clay is denoised, Cycles'
"Noisy Image") a second RGBA as half float.
"""
from __future__ import annotations

from pathlib import Path

DATA_BYTES = 4 * (1 + 3 + 4 + 1)  # Depth, Normal, Vector, Object Index: float32
COLOUR_BYTES = 2 * 4  # an RGBA half-float pass
PARTS = 6  # Blender 5.0 writes one part per pass
# Per scanline and part of an uncompressed file: its offset-table entry (8 bytes) and its chunk's
# part number, y and byte count (12) (OpenEXR file layout specification).
LINE_BYTES = 8 + 12
# A lossless codec's size against uncompressed on the default preset's collapse at 512x288 and
# 1280x720 (bench/bench_control.py; README "Speed of the passes and control stages"): RLE 0.60
# and 0.59, ZIP 0.26 and 0.22. Other scenes compress differently.
CODEC_RATIO = {"none": 1.0, "rle": 0.6, "zip": 0.26}
# Room left for the stages after the passes (control maps, frames) and everything else on the disk.
HEADROOM = 256 << 20


def frame_bytes(width: int, height: int, denoise: bool, codec: str) -> int:
    """Bytes of one frame's pass file: exact for "none" (to the header's few kB), the collapse's
    ratio of that otherwise."""
    pixels = DATA_BYTES + COLOUR_BYTES * (2 if denoise else 1)
    uncompressed = width * height * pixels + height * PARTS * LINE_BYTES
    return round(uncompressed * CODEC_RATIO[codec])


def disk_problem(width: int, height: int, denoise: bool, codec: str, frames: int, free: int, where: Path) -> str | None:
    """What to say when `frames` uncompressed pass files would not fit in `free` bytes (with
    HEADROOM), else None (also for a compressed codec, whose size is not known in advance)."""
    needed = frames * frame_bytes(width, height, denoise, codec)
    if codec != "none" or needed + HEADROOM <= free:
        return None
    gb = 1e9
    smaller = [f'"{name}" (about {frames * frame_bytes(width, height, denoise, name) / gb:.1f} GB)'
               for name in ("rle", "zip") if CODEC_RATIO[name] < CODEC_RATIO[codec]]
    advice = (f" or set [render] pass_codec = {' or '.join(smaller)} in the preset (lossless; the control stage "
              f"reads them more slowly)" if smaller else "")
    return (f"The passes of {frames} frames at {width}x{height} need about {needed / gb:.1f} GB "
            f'([render] pass_codec = "{codec}"), and the disk holding {where} has {free / gb:.1f} GB free. '
            f"Free some space, move the shot to a larger disk,{advice}.")
