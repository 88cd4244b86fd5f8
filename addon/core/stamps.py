"""Stage stamps: a stage whose inputs did not change, and whose outputs exist, is skipped.

Each stage records a key (a digest of its inputs, including the key of the stage
it builds on) in `<shot>/.rubble/stamps.json`; changing a preset section therefore
re-runs exactly the stages downstream of it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

from .files import write_json_atomic


def digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Stamps:
    def __init__(self, shot_dir: Path):
        self.path = Path(shot_dir) / ".rubble" / "stamps.json"
        try:
            self._data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            self._data = {}

    def key(self, stage: str, item: str = "") -> str | None:
        return self._data.get(stage, {}).get(item)

    def is_fresh(self, stage: str, key: str, outputs: Iterable[Path], item: str = "") -> bool:
        return self.key(stage, item) == key and all(Path(p).exists() for p in outputs)

    def record(self, stage: str, key: str, item: str = "") -> None:
        self._data.setdefault(stage, {})[item] = key
        write_json_atomic(self.path, self._data)
