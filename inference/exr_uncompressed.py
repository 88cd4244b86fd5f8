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

import struct

import numpy as np

MAGIC = 20000630
TILED, NON_IMAGE, MULTIPART = 0x200, 0x800, 0x1000
PIXEL_TYPES = {0: np.dtype("<u4"), 1: np.dtype("<f2"), 2: np.dtype("<f4")}
NO_COMPRESSION = 0


def read(data: bytes) -> list[dict[str, np.ndarray]] | None:
    """Per part, channel name -> (H, W) array viewing `data`; None when the fast path does not apply."""
    try:
        return _read(data)
    except (struct.error, ValueError, IndexError, KeyError):  # a header cut short or malformed
        return None


def _read(data: bytes) -> list[dict[str, np.ndarray]] | None:
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
    tables = []
    for header in headers:
        if header.get("compression") != NO_COMPRESSION or header.get("type", b"scanlineimage") != b"scanlineimage":
            return None
        x_min, y_min, x_max, y_max = header["dataWindow"]
        height = y_max - y_min + 1  # one scanline a chunk when uncompressed
        tables.append(np.frombuffer(data, "<u8", count=height, offset=position).astype(np.int64))
        position += 8 * height
    raw = np.frombuffer(data, np.uint8)
    parts = []
    for number, (header, offsets) in enumerate(zip(headers, tables)):
        x_min, y_min, x_max, y_max = header["dataWindow"]
        width, height = x_max - x_min + 1, y_max - y_min + 1
        channels = header["channels"]
        if any(sampling != (1, 1) for _, _, sampling in channels):
            return None
        line_bytes = sum(width * dtype.itemsize for _, dtype, _ in channels)
        prefix = (4 if multipart else 0) + 8  # [part number,] y, byte count
        stride = prefix + line_bytes
        first = int(offsets[0])
        if (first < position or first + stride * height > len(data)
                or (height > 1 and not np.all(np.diff(offsets) == stride))):
            return None
        chunk_heads = np.lib.stride_tricks.as_strided(raw[first:], (height, prefix), (stride, 1)).view("<i4")
        expected = [np.full(height, number)] if multipart else []
        expected += [y_min + np.arange(height), np.full(height, line_bytes)]
        if not np.array_equal(chunk_heads, np.stack(expected, axis=1)):
            return None
        lines = np.lib.stride_tricks.as_strided(raw[first + prefix:], (height, line_bytes), (stride, 1))
        part, start = {}, 0
        for name, dtype, _ in channels:
            part[name] = lines[:, start:start + width * dtype.itemsize].view(dtype)
            start += width * dtype.itemsize
        parts.append(part)
    return parts


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
