"""Where a preset may point the backend for weights: a Hugging Face hub id or a local model folder.

A preset is shared data, so a model id must not be able to name an arbitrary file: it is
either `owner/name` by the hub's own rules, or an absolute path (no `..`, no `~`) to an
existing folder that holds a model. Each check returns what is wrong (the words that follow
the value in a message), or None.
"""
from __future__ import annotations

import re
from pathlib import Path, PurePath

# huggingface_hub.utils._validators.validate_repo_id (REPO_ID_REGEX, with re.ASCII): each part
# is 1 to 96 of [A-Za-z0-9_.-] starting and ending with [A-Za-z0-9_]; "--" and ".." are
# forbidden and the id may not end in ".git". We also require the owner: `name` alone is legal
# on the hub only for a few legacy models, and a preset should say whose model it means.
_HUB_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
HUB_ID = re.compile(rf"{_HUB_PART}/{_HUB_PART}")
HUB_PART_MAX = 96
# Linux PATH_MAX (limits.h); longer is not a path any loader can open.
PATH_MAX = 4096
# A folder holds a model when diffusers can load it: model_index.json (a pipeline) or
# config.json (one model), as from_pretrained reads them.
MODEL_FILES = ("model_index.json", "config.json")
# A revision is a branch, a tag or a commit (git check-ref-format's rules, simplified to
# the characters hub refs use: "main", "v1.0", "refs/pr/3", a 40-hex commit).
REVISION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,127}")
REVISION_MAX = 128


def is_hub_id(value: str) -> bool:
    return bool(HUB_ID.fullmatch(value)) and "--" not in value and ".." not in value and not value.endswith(".git")


def model_id_problem(value: str, check_local: bool = True) -> str | None:
    """Why `value` is neither a hub id nor a local model folder (to follow the value in a
    message), or None. `check_local=False` checks a path's form only: for a preset read back
    from a shot on a machine (a farm node) that may never load the model nor have its folder."""
    if is_hub_id(value):
        return None
    if value.startswith("~"):
        return "is relative to a home folder (~): write the full path of the model folder"
    path = PurePath(value)
    if ".." in path.parts:
        return "is a path with '..' in it: write a hub id owner/name, or the model folder's own absolute path"
    if not path.is_absolute():
        return (f"is not a hub id: write owner/name, each part 1 to {HUB_PART_MAX} letters, digits, '_', '-' "
                "or '.', starting and ending with a letter, digit or '_', without '--' or '..'; or the "
                "absolute path of a local model folder")
    if "\x00" in value:
        return "has a NUL character in it, which no path can hold"
    if not check_local:
        return None
    folder = Path(value)
    if not folder.is_dir():
        return "is not an existing folder on this machine (nor a hub id owner/name)"
    if not any((folder / name).is_file() for name in MODEL_FILES):
        return f"is a folder without a model in it (a model folder has {' or '.join(MODEL_FILES)})"
    return None


def revision_problem(value: str) -> str | None:
    if REVISION.fullmatch(value) and ".." not in value and "//" not in value and not value.endswith(("/", ".lock")):
        return None
    return (f"is not a revision: a branch, tag or commit of 1 to {REVISION_MAX} letters, digits, '_', '.', "
            "'/' or '-' (e.g. \"main\" or a 40-character commit hash), without '..'")
