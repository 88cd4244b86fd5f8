"""Write TOML for preset data: tables, arrays of tables, strings, integers, floats, booleans
and arrays of those. Python reads TOML (tomllib) but has no writer, and neither Blender's
Python nor the bpy wheel ships one (no tomli_w or toml in 5.0.1 or 4.2.23), so this is the
small part of TOML 1.0.0 (toml.io/en/v1.0.0) that presets use. `tomllib.loads(dumps(d)) == d`
for any such `d`; anything else (None, dates, objects) is refused, never written as repr().
"""
from __future__ import annotations

import math
import re

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # TOML 1.0.0 "Keys": bare keys
# TOML 1.0.0 "String": basic strings escape ", \ and the control characters U+0000-U+001F, U+007F.
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_INT64 = 2**63  # TOML integers are 64-bit signed


def dumps(data: dict, header: str = "") -> str:
    """`data` as a TOML document, after `header` (comment lines, each written as `# ...`)."""
    if not isinstance(data, dict):
        raise TypeError(f"a TOML document is a table (dict), not {type(data).__name__}")
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    _table(data, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _is_table_array(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(v, dict) for v in value)


def _table(table: dict, path: list[str], lines: list[str]) -> None:
    # Plain keys first: once a [sub-table] header is written, later keys would belong to it.
    nested = {k: v for k, v in table.items() if isinstance(v, dict) or _is_table_array(v)}
    for key, value in table.items():
        if key not in nested:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in nested.items():
        name = ".".join(_key(k) for k in [*path, key])
        if isinstance(value, dict):
            plain = any(not (isinstance(v, dict) or _is_table_array(v)) for v in value.values())
            if plain or not value:  # a table of tables only needs its sub-tables' headers
                lines += ["", f"[{name}]"]
            _table(value, [*path, key], lines)
        else:
            for item in value:
                lines += ["", f"[[{name}]]"]
                _table(item, [*path, key], lines)


def _key(key) -> str:
    if not isinstance(key, str):
        raise TypeError(f"TOML keys are strings, not {type(key).__name__} {key!r}")
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _value(value) -> str:
    if isinstance(value, bool):  # before int: bool is an int in Python
        return "true" if value else "false"
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise ValueError(f"{value} does not fit in TOML's 64-bit integers")
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # shortest text that reads back as the same double; "1e-05" is valid TOML
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        if any(isinstance(v, dict) for v in value):
            raise TypeError("an array mixing tables and values has no TOML spelling here")
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"{type(value).__name__} {value!r} has no TOML spelling (preset data is tables, "
                    "strings, numbers, booleans and arrays)")
