"""Atomic writes and content hashes for files in the shot directory.

A reader (the add-on, a farm task, a rerun) must never see a half-written file, so every
output is written beside its final name and renamed into place (rename is atomic on POSIX
and on Windows within one volume).
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import xxhash
from PIL import Image, PngImagePlugin
from zlib_ng import zlib_ng

# PNG row filters (PNG specification, 3rd edition, section 9.2). One filter for the whole image,
# chosen per kind of map, instead of Pillow's per-row trial of all five: that trial was half of
# the control maps' encoding time (bench/bench_control.py; README "Speed of the control stage").
PNG_FILTERS = {"none": 0, "sub": 1, "up": 2}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_json(path: Path, data: dict) -> None:
    _atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"))


def write_png(path: Path, image: Image.Image, text: dict[str, str] | None = None, compress_level: int = 6) -> None:
    """compress_level: zlib's 0-9 (6 is Pillow's default); lossless at every level."""
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_itxt(key, value)  # iTXt: UTF-8, so "—" and the like survive
    _atomic(path, lambda tmp: image.save(tmp, format="PNG", pnginfo=info, compress_level=compress_level))


def write_png_pixels(path: Path, pixels: np.ndarray, png_filter: str = "none", level: int = 1) -> None:
    """A PNG of `pixels` as they are: (H, W) uint8 grey, (H, W) uint16 16-bit grey or (H, W, 3) uint8
    RGB. Every row gets `png_filter`; `level` is zlib's 0-9. Lossless whatever the choice."""
    data = png_bytes(pixels, png_filter, level)
    _atomic(path, lambda tmp: tmp.write_bytes(data))


def png_bytes(pixels: np.ndarray, png_filter: str = "none", level: int = 1) -> bytes:
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if pixels.dtype not in (np.uint8, np.uint16) or channels not in (1, 3) or (channels == 3 and pixels.dtype != np.uint8):
        raise ValueError(f"png_bytes takes (H, W) uint8/uint16 or (H, W, 3) uint8, not {pixels.shape} {pixels.dtype}")
    # PNG samples are big-endian; filters work on bytes, whatever the sample size (spec 9.2).
    raw = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder(">")).reshape(height, -1).view(np.uint8)
    rows = np.empty((height, raw.shape[1] + 1), np.uint8)  # each row: its filter-type byte, then the filtered bytes
    rows[:, 0] = PNG_FILTERS[png_filter]
    if png_filter == "none":
        rows[:, 1:] = raw
    elif png_filter == "sub":  # byte minus the same byte of the pixel to the left, modulo 256
        step = channels * pixels.dtype.itemsize
        rows[:, 1:1 + step] = raw[:, :step]
        np.subtract(raw[:, step:], raw[:, :-step], out=rows[:, 1 + step:])
    else:  # "up": byte minus the byte above, modulo 256
        rows[0, 1:] = raw[0]
        np.subtract(raw[1:], raw[:-1], out=rows[1:, 1:])
    colour_type = 0 if channels == 1 else 2  # grey or RGB
    header = (width.to_bytes(4, "big") + height.to_bytes(4, "big")
              + bytes([pixels.dtype.itemsize * 8, colour_type, 0, 0, 0]))  # deflate, adaptive filtering, no interlace
    # zlib-ng: the same deflate format, 3-7x faster than zlib at level 1 on the control maps
    # (depth 0.26 against 0.96 ms at 512x288; bench/bench_control.py).
    return (_PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib_ng.compress(rows, level))
            + _png_chunk(b"IEND", b""))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib_ng.crc32(data, zlib_ng.crc32(kind)).to_bytes(4, "big")


def write_npy(path: Path, array) -> None:
    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to the tmp name
            np.save(f, array)

    _atomic(path, save)


def write_with(path: Path, write) -> None:
    """`write(tmp)` writes the file at a temporary name beside `path`; it is then renamed into place
    (for writers that take a file name, such as OpenEXR's, which may not say FileNotFoundError
    for a missing folder: made first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic(path, write)


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:
            write(tmp)
        except FileNotFoundError:  # its folder is new: made only then (a control stage writes ~10 files a frame)
            path.parent.mkdir(parents=True, exist_ok=True)
            write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    return _digest_file(path, hashlib.sha256())


def fingerprint(data) -> str:
    """A content fingerprint for telling whether a file changed (not for security): XXH3, 128
    bits. 17x faster than sha256 here (7.7 MB of passes: 0.22 against 3.8 ms), which was the
    control stage's largest cost per frame after decoding (bench/bench_control.py)."""
    return xxhash.xxh3_128_hexdigest(data)


def fingerprint_file(path: Path) -> str:
    return _digest_file(path, xxhash.xxh3_128())


def _digest_file(path: Path, digest) -> str:
    """`digest` (hashlib's or xxhash's interface) over the file, read 1 MB at a time."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(root: Path) -> str:
    """One hash over every file's relative path and content, in a stable order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(sha256_file(path).encode() + b"\n")
    return digest.hexdigest()


def sha256_json(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
