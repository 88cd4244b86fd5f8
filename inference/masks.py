"""Masks per role from the Object Index pass (docs/contract.md, "control/mask").

Cycles' Object Index pass is not anti-aliased: a pixel holds one sample's object, never a
blend (checked at 4 samples in tests/addon/test_flow_and_masks.py, where the Vector pass of
the same edge pixels is averaged over the samples). So every pixel belongs to at most one
object and thus to at most one role; at an edge the mask follows that one sample, which may
disagree with the flow there. Index 0 (nothing hit, or an object without a pass index) is no role.
"""

import numpy as np

DEBRIS = "debris"


def role_names(roles: dict[int, str], has_fragments: bool) -> list[str]:
    names = set(roles.values())
    if has_fragments:
        names.add(DEBRIS)
    return sorted(names)


def role_masks(object_index: np.ndarray, roles: dict[int, str], moved: frozenset[int], names: list[str]) -> dict[str, np.ndarray]:
    """One boolean (H, W) mask per name in `names`; fragments in `moved` count as debris."""
    index = np.rint(object_index).astype(np.int64)
    number = {name: n for n, name in enumerate(names)}
    role_ids = np.fromiter(roles, np.int64, len(roles))
    moved_ids = np.fromiter(moved, np.int64, len(moved))
    # A lookup table from index to role number (len(names) = no role): one pass over the pixels.
    # Filled with arrays, not a loop: ~1,000 fragments a frame.
    size = max(int(index.max(initial=0)), int(role_ids.max(initial=0)), int(moved_ids.max(initial=0))) + 1
    table = np.full(size, len(names), np.int64)
    role_numbers = np.fromiter((number[role] for role in roles.values()), np.int64, len(roles))
    table[role_ids[role_ids > 0]] = role_numbers[role_ids > 0]
    if moved_ids.size:
        table[moved_ids[moved_ids > 0]] = number[DEBRIS]  # a moved fragment is debris, whatever its role
    which = table.take(index, mode="clip")  # clipped like np.clip(index, 0, size - 1)
    return {name: which == n for n, name in enumerate(names)}
