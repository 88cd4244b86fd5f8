"""Bonds between touching fragments: which pairs, how strong, and in Blender's units.

Blender's rigid-body constraints break when the impulse the solver applies to them in
ONE substep exceeds `breaking_threshold`. A bond that should hold a force
F = sigma x A (strength of the weaker material times the contact area) therefore gets

    threshold [N s] = sigma [Pa] x A [m^2] x time_scale / (fps x substeps) / n  x  k_type

because one substep lasts time_scale / (fps x substeps) seconds of simulated time, n
constraints share the contact (here n = 1: one constraint per contact), and k_type
corrects for the constraint type: FIXED 1.0, GENERIC 2.2 (measured; see TYPE_FACTOR).
The threshold must be recomputed whenever fps, substeps or time_scale change;
the Blender layer stores sigma x A on each constraint for that (`threshold`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fracture import GROUND, Fracture
from .materials import Material

# Multiplier on the FIXED threshold that makes a GENERIC constraint with all six axes
# locked at zero hold the same static load. Measured with bench/bench_destruction.py
# --measure-type-factor (100 kg hanging 0.5 m below its bond, 24 fps, 10 substeps; the
# smallest holding threshold found by bisection): FIXED 4.088 N s, exactly m g dt, which
# confirms the formula; GENERIC 8.99 N s, 2.2 x; the same in bpy 5.0.1 and 4.2.23.
TYPE_FACTOR = {"FIXED": 1.0, "GENERIC": 2.2}


@dataclass(frozen=True)
class Bond:
    a: int            # fragment index
    b: int            # fragment index, or fracture.GROUND
    force_n: float    # sigma x A: the force the bond holds, N
    area_m2: float


def threshold(force_n: float, fps: float, substeps: int, time_scale: float = 1.0, n: int = 1,
              constraint_type: str = "FIXED") -> float:
    """Blender's per-substep breaking impulse for a bond that holds `force_n` (formula above)."""
    return force_n * time_scale / (fps * substeps) / n * TYPE_FACTOR[constraint_type]


# Under `bond_strength = "auto"`, a contact that carries the self-weight above it in
# compression (Bullet carries it through the bond, since bonded pairs do not collide)
# gets the compressive strength: one whose normal is within 60 degrees of vertical, or
# any contact of a column (its oblique Voronoi faces carry the storeys above). Every
# other contact gets the tensile strength, the weakest way concrete and masonry fail.
VERTICAL_NZ = 0.5


def bond_mode(strength: str, normal, column: bool = False) -> str:
    if strength != "auto":
        return strength
    return "compressive" if column or abs(normal[2]) >= VERTICAL_NZ else "tensile"


def make_bonds(fracture: Fracture, materials: dict[str, Material], strength: str = "auto") -> list[Bond]:
    """One bond per contact, as strong as the weaker of the two materials over the contact area."""
    elements, frags = fracture.elements, fracture.fragments
    out = []
    for c in fracture.contacts:
        column = elements[frags[c.a].element].kind == "column" or (
            c.b != GROUND and elements[frags[c.b].element].kind == "column")
        mode = bond_mode(strength, c.normal, column)
        sigma = materials[elements[frags[c.a].element].material].strength(mode)
        if c.b != GROUND:
            sigma = min(sigma, materials[elements[frags[c.b].element].material].strength(mode))
        out.append(Bond(c.a, c.b, sigma * c.area, c.area))
    return out


def masses(fracture: Fracture, materials: dict[str, Material]) -> np.ndarray:
    """Mass of each fragment, kg: density x volume."""
    elements = fracture.elements
    return np.array([materials[elements[f.element].material].density_kg_m3 * f.volume for f in fracture.fragments])
