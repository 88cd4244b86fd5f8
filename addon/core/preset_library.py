"""The preset library: the presets shipped with Rubble and the artist's own, by name.

Shipped presets are the extension's presets/ folder, read-only (an update replaces it). The
artist's live in a folder of their own: inside Blender the extension's user folder, which
survives updates (ui/presets.py passes it); here, any folder. One preset is one .toml file
and its library name is the file name without `.toml`. Whatever enters the user folder is
validated first and written atomically, so a refused or interrupted save, duplicate or
import leaves the folder as it was. Presets are data: nothing in them is ever executed.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from . import VERSION
from .checks import MAX_PRESET_BYTES
from .files import write_text_atomic
from .preset import Preset, PresetError, load_preset, preset_from_bytes, preset_from_dict
from .toml_writer import dumps

SHIPPED_DIR = Path(__file__).resolve().parents[2] / "presets"
SUFFIX = ".toml"
# A name becomes a file name on every system an artist or a farm uses: letters, digits, spaces,
# '_', '-', '.'; no leading dot (hidden), no trailing dot or space (Windows drops them).
NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 _.-]{0,62}[A-Za-z0-9_-])?")
# Windows reserves these file names whatever the extension (learn.microsoft.com, "Naming Files,
# Paths, and Namespaces").
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
HEADER = ("Rubble preset: plain data, validated against addon/core/preset.py's schema, never executed.\n"
          f"Saved by Rubble {VERSION}.")


class LibraryError(ValueError):
    """A library action that cannot be done; the message says what to do instead."""


@dataclass(frozen=True)
class Entry:
    name: str              # the file name without .toml
    path: Path
    shipped: bool
    title: str             # the preset's own `name`, or "" when it does not load
    problem: str = ""      # why it does not load, each bad key ("" when it loads)

    @property
    def key(self) -> str:
        """Unique across both folders: a user preset may share a shipped one's name."""
        return f"{'shipped' if self.shipped else 'user'}:{self.name}"


def check_name(name: str) -> str:
    """`name` as a preset's library name, or LibraryError saying what a name may be."""
    name = name.strip()
    if name.lower().endswith(SUFFIX):
        name = name[: -len(SUFFIX)]
    if not NAME.fullmatch(name) or name.split(".")[0].lower() in _RESERVED:
        raise LibraryError(f"{name!r} cannot be a preset name: use 1 to 64 letters, digits, spaces, '_', '-' or '.', "
                           "starting with a letter or digit (it becomes the file name)")
    return name


def preset_text(preset: Preset, title: str | None = None) -> str:
    """The preset as TOML, `schema` and `name` first; it loads back equal (checked)."""
    data = preset.to_dict()
    if title is not None:
        data["name"] = title
    ordered = {"schema": data.pop("schema"), "name": data.pop("name"), **data}
    text = dumps(ordered, header=HEADER)
    again = preset_from_dict(tomllib.loads(text), source="<written>", check_local=False)
    expected = preset_from_dict(ordered, source="<preset>", check_local=False)
    if again != expected:  # pragma: no cover - a writer bug must never reach a file
        raise AssertionError("the TOML written for this preset does not read back the same")
    return text


def write_preset(preset: Preset, path: Path, title: str | None = None) -> Path:
    """Write `preset` as a .toml file, atomically (a crash leaves the old file or the new one)."""
    write_text_atomic(Path(path), preset_text(preset, title))
    return Path(path)


def export_file(source: Path, destination: Path) -> Path:
    """A valid preset file copied, as it is, to `destination` (`.toml` added when missing)."""
    destination = Path(destination)
    if destination.suffix.lower() != SUFFIX:
        destination = destination.with_name(destination.name + SUFFIX)
    if destination.is_dir():
        raise LibraryError(f"{destination} is a folder; choose a file name ending in {SUFFIX}")
    raw = _validated_bytes(Path(source))
    write_text_atomic(destination, raw.decode("utf-8").replace("\r\n", "\n"))
    return destination


def _validated_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:  # no further than the size limit: a preset is small
            raw = handle.read(MAX_PRESET_BYTES + 1)
    except OSError as exc:
        raise LibraryError(f"{path} cannot be read: {exc.strerror or exc}") from None
    preset_from_bytes(raw, str(path))  # raises PresetError naming each bad key
    return raw


class PresetLibrary:
    def __init__(self, user_dir: Path, shipped_dir: Path = SHIPPED_DIR):
        self.user_dir = Path(user_dir)
        self.shipped_dir = Path(shipped_dir)
        self._titles: dict[Path, tuple[tuple[int, int], str, str]] = {}  # path -> (stat, title, problem)

    # --- reading -------------------------------------------------------------------
    def entries(self) -> list[Entry]:
        """Shipped presets, then the user's, each sorted by name; a user file that does not
        load is listed too, with its problem, so the artist sees why it cannot be picked."""
        return [*self._folder(self.shipped_dir, True), *self._folder(self.user_dir, False)]

    def _folder(self, folder: Path, shipped: bool) -> list[Entry]:
        if not folder.is_dir():
            return []
        paths = sorted((p for p in folder.glob(f"*{SUFFIX}") if not p.name.startswith(".") and p.is_file()),
                       key=lambda p: p.stem.lower())
        return [Entry(p.stem, p, shipped, *self._describe(p)) for p in paths]

    def _describe(self, path: Path) -> tuple[str, str]:
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = self._titles.get(path)
        if cached is None or cached[0] != stamp:
            try:
                cached = (stamp, load_preset(path).name, "")
            except PresetError as exc:
                cached = (stamp, "", "; ".join(exc.problems))
            self._titles[path] = cached
        return cached[1], cached[2]

    def find(self, key: str) -> Entry:
        for entry in self.entries():
            if entry.key == key:
                return entry
        known = ", ".join(e.key for e in self.entries())
        raise LibraryError(f"no preset {key!r} in the library (known: {known})")

    def entry_for(self, path: Path) -> Entry | None:
        """The library's entry for a preset file, or None when the file is elsewhere."""
        path = Path(path).resolve()
        return next((e for e in self.entries() if e.path.resolve() == path), None)

    def load(self, key: str) -> Preset:
        return load_preset(self.find(key).path)

    def user_path(self, name: str) -> Path:
        return self.user_dir / f"{check_name(name)}{SUFFIX}"

    # --- writing into the user folder ---------------------------------------------------
    def _target(self, name: str, overwrite: bool) -> Path:
        path = self.user_path(name)
        taken = [e for e in self._folder(self.user_dir, False) if e.name.casefold() == path.stem.casefold()]
        if taken and not overwrite:  # casefold: "Look" and "look" are one file on macOS and Windows
            raise LibraryError(f"a preset named {taken[0].name!r} is already in your presets; choose another "
                               "name, or overwrite it")
        return taken[0].path if taken else path

    def save(self, preset: Preset, name: str, overwrite: bool = False) -> Entry:
        """Save `preset` as a user preset called `name` (also its title)."""
        path = self._target(name, overwrite)
        write_preset(preset, path, title=check_name(name))
        return self._entry(path)

    def duplicate(self, key: str, name: str) -> Entry:
        """A user copy of a preset, text and comments as they are."""
        source = self.find(key)
        raw = _validated_bytes(source.path)
        path = self._target(name, overwrite=False)
        write_text_atomic(path, raw.decode("utf-8").replace("\r\n", "\n"))
        return self._entry(path)

    def import_file(self, source: Path, name: str | None = None, overwrite: bool = False) -> Entry:
        """Copy a shared .toml into the user presets, after it validated (the bytes that were
        checked are the bytes written: the file is read once)."""
        source = Path(source)
        if source.suffix.lower() != SUFFIX:
            raise LibraryError(f"{source} is not a .toml preset")
        raw = _validated_bytes(source)
        path = self._target(name or source.stem, overwrite)
        write_text_atomic(path, raw.decode("utf-8").replace("\r\n", "\n"))
        return self._entry(path)

    def export(self, key: str, destination: Path) -> Path:
        """A preset of the library as a single .toml file to share, copied as it is."""
        return export_file(self.find(key).path, destination)

    def _entry(self, path: Path) -> Entry:
        return next(e for e in self._folder(self.user_dir, False) if e.path == path)
