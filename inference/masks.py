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
    role_of = {i: (DEBRIS if i in moved else role) for i, role in roles.items()}
    for i in moved:
        role_of.setdefault(i, DEBRIS)
    # A lookup table from index to role number (len(names) = no role): one pass over the pixels.
    table = np.full(max([int(index.max(initial=0)), *role_of]) + 1, len(names), np.int64)
    number = {name: n for n, name in enumerate(names)}  # not names.index(): ~1,000 fragments a frame
    for i, role in role_of.items():
        if i > 0:
            table[i] = number[role]
    which = table[np.clip(index, 0, len(table) - 1)]
    return {name: which == n for n, name in enumerate(names)}
