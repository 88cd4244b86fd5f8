"""Atomic writes and content hashes for files in the shot directory.

A reader (the add-on, a farm task, a rerun) must never see a half-written file, so every
output is written beside its final name and renamed into place (rename is atomic on POSIX
and on Windows within one volume).
"""

import hashlib
import json
import os
from pathlib import Path

from PIL import Image, PngImagePlugin


def write_json(path: Path, data: dict) -> None:
    _atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"))


def write_png(path: Path, image: Image.Image, text: dict[str, str] | None = None, compress_level: int = 6) -> None:
    """compress_level: zlib's 0-9 (6 is Pillow's default); lossless at every level."""
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_itxt(key, value)  # iTXt: UTF-8, so "—" and the like survive
    _atomic(path, lambda tmp: image.save(tmp, format="PNG", pnginfo=info, compress_level=compress_level))


def write_npy(path: Path, array) -> None:
    import numpy as np

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to the tmp name
            np.save(f, array)

    _atomic(path, save)


def write_with(path: Path, write) -> None:
    """`write(tmp)` writes the file at a temporary name beside `path`; it is then renamed into place
    (for writers that take a file name, such as OpenEXR's)."""
    _atomic(path, write)


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
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
