"""sha256 of weight files, computed once per file version.

Cached by resolved path, size and modification time in ~/.cache/rubble/hashes.json
($RUBBLE_HASH_CACHE to move it), so a multi-gigabyte checkpoint is read once, not on every run.
The cache is only a shortcut: unreadable or unwritable, it is ignored and the file is hashed.
"""

import json
import os
from pathlib import Path

from . import files

CACHE_ENV = "RUBBLE_HASH_CACHE"
DEFAULT_CACHE = Path.home() / ".cache" / "rubble" / "hashes.json"


def cache_path() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def sha256(path: Path) -> str:
    path = Path(path).resolve()
    stat = path.stat()
    version = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    entry = _load().get(str(path))
    if entry and {k: entry.get(k) for k in version} == version:
        return entry["sha256"]
    digest = files.sha256_file(path)
    entries = _load()  # again: another process may have added entries while this one hashed
    entries[str(path)] = {**version, "sha256": digest}
    try:
        files.write_json(cache_path(), entries)  # atomic (unique temporary name + rename)
    except OSError:
        pass  # a read-only home: hash again next time rather than fail
    return digest


def _load() -> dict:
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
