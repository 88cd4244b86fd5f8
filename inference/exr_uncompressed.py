"""Uncompressed scanline OpenEXR files read straight from their bytes, without copying a pixel.

Layout from the OpenEXR file layout specification (openexr.com, "OpenEXR File Layout"): magic
number, version field, one header per part (attributes: name, type, size, value; an empty name
ends a header, an empty header ends a multi-part list), one table of chunk offsets per part, then
the chunks: [part number, multi-part only] y, byte count, then for an uncompressed file one
scanline with each channel's pixels in turn, channels in the header's (alphabetical) order,
little-endian. When a part's chunks lie one after the other, as every writer puts them, each
channel is a strided view of the file's bytes.

The OpenEXR Python binding reads such a file at ~1 GB/s (one read call per chunk, a conversion
per chunk); this at memory speed. Anything else (compressed, tiled, deep, subsampled, chunks
out of order, a size or offset that does not add up, so also a truncated file) returns None
and the caller reads the file with the binding, which says what is wrong with it.
"""

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = 20000630
TILED, NON_IMAGE, MULTIPART = 0x200, 0x800, 0x1000
PIXEL_TYPES = {0: np.dtype("<u4"), 1: np.dtype("<f2"), 2: np.dtype("<f4")}
NO_COMPRESSION = 0
HEAD_BYTES = 1 << 16  # read_part's first read: the headers and offset tables of a 512x288 file are ~15 kB


@dataclass(frozen=True)
class _Part:
    """Where one part's scanlines lie in the file."""

    number: int
    channels: list  # (name, dtype, sampling), in the file's order
    y_min: int
    width: int
    height: int
    first: int  # file offset of the first chunk
    prefix: int  # bytes before a scanline's pixels: [part number,] y, byte count
    line_bytes: int
    multipart: bool

    @property
    def stride(self) -> int:
        return self.prefix + self.line_bytes

    @property
    def end(self) -> int:
        return self.first + self.stride * self.height


def read(data: bytes) -> list[dict[str, np.ndarray]] | None:
    """Per part, channel name -> (H, W) array viewing `data`; None when the fast path does not apply."""
    try:
        parts = _layout(data)
        if parts is None or any(part.end > len(data) for part in parts):
            return None
        raw = np.frombuffer(data, np.uint8)
        views = [_views(raw[part.first:part.end], part) for part in parts]
        return None if any(view is None for view in views) else views
    except (struct.error, ValueError, IndexError, KeyError):  # a header cut short or malformed
        return None


def read_part(path: Path, channel: str) -> dict[str, np.ndarray] | None:
    """The channels of the part that holds the channel named `channel` (or ending with "." +
    `channel`, e.g. "Depth.Z"), reading only the headers and that part's bytes (a single-part
    file: all of it); None when the fast path does not apply or no part has that channel."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(HEAD_BYTES)
        while True:  # the headers and offset tables: a few kB, more for tall images
            try:
                parts = _layout(head)
                break
            except (struct.error, ValueError, IndexError, KeyError):
                more = f.read(len(head)) if len(head) < size else b""
                if not more:  # the whole file, or it shrank meanwhile
                    return None
                head += more
        if parts is None:
            return None
        found = [part for part in parts
                 if any(name == channel or name.endswith("." + channel) for name, _, _ in part.channels)]
        if len(found) != 1 or any(other.end > size for other in parts):  # a cut-off file: read() says so
            return None
        part = found[0]
        f.seek(part.first)
        return _views(np.frombuffer(f.read(part.end - part.first), np.uint8), part)


def _layout(data: bytes) -> list[_Part] | None:
    """The parts' layout from the headers and offset tables; None for a file the fast path does
    not take. Raises (struct.error, IndexError...) when `data` ends inside them."""
    magic, version = struct.unpack_from("<ii", data, 0)
    if magic != MAGIC or version & (TILED | NON_IMAGE):
        return None
    multipart = bool(version & MULTIPART)
    position, headers = 8, []
    while True:
        header, position = _header(data, position)
        headers.append(header)
        if not multipart:
            break
        if data[position] == 0:  # the empty header that ends the list
            position += 1
            break
    parts = []
    for number, header in enumerate(headers):
        if header.get("compression") != NO_COMPRESSION or header.get("type", b"scanlineimage") != b"scanlineimage":
            return None
        x_min, y_min, x_max, y_max = header["dataWindow"]
        width, height = x_max - x_min + 1, y_max - y_min + 1  # one scanline a chunk when uncompressed
        if 8 * height > len(data) - position:
            raise IndexError("offset table cut short")
        offsets = np.frombuffer(data, "<u8", count=height, offset=position).astype(np.int64)
        position += 8 * height
        channels = header["channels"]
        if any(sampling != (1, 1) for _, _, sampling in channels):
            return None
        line_bytes = sum(width * dtype.itemsize for _, dtype, _ in channels)
        part = _Part(number, channels, y_min, width, height, int(offsets[0]), (4 if multipart else 0) + 8,
                     line_bytes, multipart)
        if part.first < position or (height > 1 and not np.all(np.diff(offsets) == part.stride)):
            return None
        parts.append(part)
    return parts


def _views(raw: np.ndarray, part: _Part) -> dict[str, np.ndarray] | None:
    """Channel name -> (H, W) view of the part's scanlines in `raw` (its bytes from the first
    chunk on); None when a chunk's [part number,] y and byte count are not what they must be."""
    height = part.height
    chunk_heads = np.lib.stride_tricks.as_strided(raw, (height, part.prefix), (part.stride, 1)).view("<i4")
    expected = [np.full(height, part.number)] if part.multipart else []
    expected += [part.y_min + np.arange(height), np.full(height, part.line_bytes)]
    if not np.array_equal(chunk_heads, np.stack(expected, axis=1)):
        return None
    lines = np.lib.stride_tricks.as_strided(raw[part.prefix:], (height, part.line_bytes), (part.stride, 1))
    views, start = {}, 0
    for name, dtype, _ in part.channels:
        views[name] = lines[:, start:start + part.width * dtype.itemsize].view(dtype)
        start += part.width * dtype.itemsize
    return views


def _header(data: bytes, position: int) -> tuple[dict, int]:
    header = {}
    while True:
        end = data.index(b"\0", position)
        name = data[position:end]
        position = end + 1
        if not name:
            return header, position
        end = data.index(b"\0", position)
        kind = data[position:end]
        (size,) = struct.unpack_from("<i", data, end + 1)
        value = data[end + 5:end + 5 + size]
        if len(value) != size:
            raise ValueError("attribute cut short")
        position = end + 5 + size
        if name == b"channels" and kind == b"chlist":
            header["channels"] = _channels(value)
        elif name == b"compression":
            header["compression"] = value[0]
        elif name == b"dataWindow" and kind == b"box2i":
            header["dataWindow"] = struct.unpack("<4i", value)
        elif name == b"type":
            header["type"] = value.rstrip(b"\0")


def _channels(value: bytes) -> list[tuple[str, np.dtype, tuple[int, int]]]:
    channels, position = [], 0
    while value[position] != 0:
        end = value.index(b"\0", position)
        pixel_type, _linear, x_sampling, y_sampling = struct.unpack_from("<iB3xii", value, end + 1)
        channels.append((value[position:end].decode(), PIXEL_TYPES[pixel_type], (x_sampling, y_sampling)))
        position = end + 17
    return channels
