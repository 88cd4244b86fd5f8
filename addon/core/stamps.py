"""Stage stamps: a stage whose inputs did not change, and whose outputs exist, is skipped.

Each stage records a key (a digest of its inputs, including the key of the stage
it builds on); changing a preset section therefore re-runs exactly the stages
downstream of it.

One small file per stamp, `<shot>/.rubble/stamps/<stage>/<item>` holding the key, each
written atomically under a unique temporary name and read fresh on every question: farm
chunks running in parallel processes each write only their own frames' files, so none
can lose another's stamps. The single `stamps.json` of Rubble 0.1.0 is not read: its
stages count as not done and run once more.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterable

from .files import write_text_atomic

_WHOLE_STAGE = "_"  # the file name of a stamp that covers the whole stage (item "")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Stamps:
    def __init__(self, shot_dir: Path):
        self.root = Path(shot_dir) / ".rubble" / "stamps"

    def _path(self, stage: str, item: str) -> Path:
        for name in (stage, item or _WHOLE_STAGE):
            if name != _WHOLE_STAGE and not _SAFE_NAME.fullmatch(name):
                raise ValueError(f"not a stamp name: {name!r}")  # a caller bug, never user input
        return self.root / stage / (item or _WHOLE_STAGE)

    def key(self, stage: str, item: str = "") -> str | None:
        try:
            return self._path(stage, item).read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def is_fresh(self, stage: str, key: str, outputs: Iterable[Path], item: str = "") -> bool:
        return self.key(stage, item) == key and all(Path(p).exists() for p in outputs)

    def record(self, stage: str, key: str, item: str = "") -> None:
        write_text_atomic(self._path(stage, item), key + "\n")
