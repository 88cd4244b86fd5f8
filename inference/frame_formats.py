"""The delivered frames' file formats: 8-bit PNG, 16-bit PNG, half-float OpenEXR.

Pillow writes 16-bit PNG only for one grey channel, so the RGB 16-bit PNG is encoded here (a
few chunks of the PNG specification, W3C PNG 2nd edition / ISO/IEC 15948). Every file carries
the same text as the 8-bit frames (the "AI-generated" disclosure): iTXt in PNG, the standard
`comments` attribute in EXR.
"""

import struct
import zlib

import numpy as np
from PIL import Image

from . import files

SIGNATURE = b"\x89PNG\r\n\x1a\n"  # PNG spec 5.2


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1] -> 8-bit, rounded (values outside [0, 1] are clipped)."""
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_uint16(rgb: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb, 0.0, 1.0) * 65535.0).astype(np.uint16)


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """The sRGB decoding function of IEC 61966-2-1: EXR holds scene-linear values, as Blender reads it."""
    rgb = np.clip(rgb, 0.0, 1.0).astype(np.float64)
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)


def write_png8(path, rgb: np.ndarray, text: dict[str, str]) -> None:
    files.write_png(path, Image.fromarray(to_uint8(rgb)), text)


def png16_bytes(rgb16: np.ndarray, text: dict[str, str]) -> bytes:
    """A 16-bit RGB PNG of (H, W, 3) uint16: IHDR (bit depth 16, colour type 2 = truecolour,
    spec 11.2.2), iTXt per text entry (11.3.4.5), one zlib IDAT with filter 0 on every row, IEND."""
    height, width, _ = rgb16.shape
    rows = np.zeros((height, 1 + width * 6), np.uint8)  # a filter-type byte (0: none) before each row
    rows[:, 1:] = np.ascontiguousarray(rgb16, dtype=">u2").view(np.uint8).reshape(height, width * 6)
    chunks = [_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))]
    for key, value in text.items():  # keyword, compression flag and method 0, no language, no translation
        chunks.append(_chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8")))
    chunks += [_chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)), _chunk(b"IEND", b"")]
    return SIGNATURE + b"".join(chunks)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png16(path, rgb: np.ndarray, text: dict[str, str]) -> None:
    data = png16_bytes(to_uint16(rgb), text)
    files.write_with(path, lambda tmp: tmp.write_bytes(data))


def write_exr_half(path, rgb: np.ndarray, text: dict[str, str]) -> None:
    """Half-float R, G, B (ZIP compressed) of the frame in linear light."""
    import OpenEXR

    linear = srgb_to_linear(rgb).astype(np.float16)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage,
              "comments": "; ".join(f"{k}: {v}" for k, v in text.items())}
    channels = {name: np.ascontiguousarray(linear[..., i]) for i, name in enumerate("RGB")}
    files.write_with(path, lambda tmp: OpenEXR.File(header, channels).write(str(tmp)))


WRITERS = {"png8": write_png8, "png16": write_png16, "exr_half": write_exr_half}
