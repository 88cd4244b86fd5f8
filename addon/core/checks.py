"""The shared vocabulary of preset validation: the sane maxima every section uses, how a
value is quoted in a message, and "unknown key" with a suggestion.

bpy-free, and imported by preset.py and the destruction sections alike (it imports none of them).
"""
from __future__ import annotations

import difflib

# Blender's last frame: MAXFRAME in source/blender/makesdna/DNA_scene_defines.h (1048574).
MAX_FRAME = 1_048_574
# A sane maximum for one shot: 10,000 frames is about 7 minutes at 24 fps, far beyond one
# destruction shot; longer work is several shots (and a mistyped frame_end is refused).
MAX_SHOT_FRAMES = 10_000
# Characters of text. CLIP, SD1.5's text encoder, reads 77 tokens (about 300 characters) of a
# prompt; 2,000 leaves room for long ones, while a megabyte of text in a preset is a mistake.
MAX_PROMPT = 2_000
MAX_NAME = 200
MAX_STRING = 256  # any other string: choices, revisions
# A preset is a few kilobytes of text (presets/default.toml is 3 kB).
MAX_PRESET_BYTES = 1 << 20

# The generation size must keep the shot's aspect ratio within 1 %: about what rounding to a
# multiple of 8 costs at SD1.5 sizes, while the demo's former 4 % stretch was visible.
ASPECT_TOLERANCE = 0.01

_SHOWN = 60


def shown(value) -> str:
    """`value` as a message quotes it: repr, cut short, with TOML's words for booleans."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    text = repr(value)
    if len(text) > _SHOWN:
        size = f"{len(value)} characters" if isinstance(value, str) else f"{len(text)} characters as text"
        text = f"{text[:_SHOWN]}... ({size})"
    return text


def described(value) -> str:
    """'str 'x'', 'int 5', 'the boolean true': a value and its TOML type, for "expected ..., got ..."."""
    return shown(value) if isinstance(value, bool) else f"{type(value).__name__} {shown(value)}"


def unknown(where: str, what: str, known) -> str:
    """'<where>: unknown <what>; did you mean 'x'? (known: ...)' for a key or name not in `known`."""
    hint = suggestion(where.rsplit(".", 1)[-1], known)
    return f"{shown_key(where)}: unknown {what}{hint} (known: {', '.join(known)})"


def suggestion(name, known) -> str:
    """"; did you mean 'x'?" when `name` is close to one of `known` (a typo), else ""."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.7) if isinstance(name, str) else []
    return f"; did you mean {close[0]!r}?" if close else ""


def shown_key(key: str) -> str:
    """A dotted key as a message names it; a key of 100,000 characters is cut short too."""
    return key if len(key) <= 2 * _SHOWN else f"{key[:2 * _SHOWN]}... ({len(key)} characters)"


def aspect_error(resolution: tuple[int, int], size: tuple[int, int]) -> float:
    """How far `size`'s width:height is from `resolution`'s, as a fraction (0.04 = a 4 % stretch)."""
    return abs((size[0] / size[1]) / (resolution[0] / resolution[1]) - 1.0)


def fitting_sizes(resolution: tuple[int, int], area: int, multiple: int, lo: int, hi: int,
                  count: int = 3) -> list[tuple[int, int]]:
    """Up to `count` generation sizes, multiples of `multiple` within [lo, hi] on each side, whose
    aspect is within ASPECT_TOLERANCE of `resolution`'s, nearest to `area` pixels first."""
    aspect = resolution[0] / resolution[1]
    found = set()
    for height in range(-(-lo // multiple) * multiple, hi + 1, multiple):  # multiples of `multiple` from lo
        width = round(height * aspect / multiple) * multiple
        if lo <= width <= hi and height >= lo and aspect_error(resolution, (width, height)) <= ASPECT_TOLERANCE:
            found.add((width, height))
    return sorted(found, key=lambda s: (abs(s[0] * s[1] - area), s))[:count]


def aspect_problem(resolution: tuple[int, int], size: tuple[int, int], multiple: int, lo: int, hi: int) -> str | None:
    """A message naming the sizes that fit when the generation `size` stretches the shot's `resolution`
    by more than ASPECT_TOLERANCE, else None. `multiple`: what the model family's VAE (and patching)
    needs, 8 for SD1.5."""
    error = aspect_error(resolution, size)
    if error <= ASPECT_TOLERANCE:
        return None
    fits = fitting_sizes(resolution, size[0] * size[1], multiple, lo, hi)
    shot = f"{resolution[0]}x{resolution[1]} ({resolution[0] / resolution[1]:.3f})"
    where = (f"model.width / model.height: {size[0]}x{size[1]} ({size[0] / size[1]:.3f}) stretches the shot's "
             f"resolution {shot} by {error:.1%}, more than the {ASPECT_TOLERANCE:.0%} allowed")
    if not fits:
        return f"{where}; no multiple of {multiple} from {lo} to {hi} fits, so change shot.resolution"
    options = " or ".join(f"width = {w}, height = {h}" for w, h in fits)
    return f"{where}; write {options} in [model] (multiples of {multiple} near the same area), or change shot.resolution"
