"""Structural materials as data, each number with the published source it comes from.

SI units throughout: densities in kg/m^3, strengths in Pa. A preset may override any
number of a material (`[materials.concrete] tensile_strength_pa = 2.0e6`); see
`with_overrides`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..checks import shown, unknown

# Standard gravity, m/s^2; EN 1991-1-1 gives unit weights in kN/m^3, density = weight / g.
G = 9.80665


@dataclass(frozen=True)
class Material:
    name: str
    density_kg_m3: float
    compressive_strength_pa: float
    tensile_strength_pa: float
    shear_strength_pa: float
    friction: float
    # Voronoi seed points per cubic metre of element, before the element-type factor.
    cells_per_m3: float

    def strength(self, mode: str) -> float:
        return {"compressive": self.compressive_strength_pa, "tensile": self.tensile_strength_pa,
                "shear": self.shear_strength_pa}[mode]


# Reinforced concrete, strength class C25/30.
#  - density: EN 1991-1-1 Table A.1, "reinforced and prestressed concrete, normal
#    weight": 25 kN/m^3, divided by g.
#  - compressive: EN 1992-1-1 Table 3.1, fck = 25 MPa.
#  - tensile: EN 1992-1-1 Table 3.1, fctm = 2.6 MPa.
#  - shear: EN 1992-1-1 6.2.5(2), cohesion of a rough interface c = 0.45 times the
#    tensile strength (0.45 x 2.6 MPa), the weakest plane a crack runs along.
#  - friction: EN 1992-1-1 6.2.5(2), rough interface, mu = 0.7.
REINFORCED_CONCRETE = Material(
    name="concrete",
    density_kg_m3=25.0e3 / G,
    compressive_strength_pa=25.0e6,
    tensile_strength_pa=2.6e6,
    shear_strength_pa=0.45 * 2.6e6,
    friction=0.7,
    cells_per_m3=2.0,
)

# Clay brick masonry: Group 1 solid clay units fb = 20 MPa in M10 general-purpose mortar.
#  - density: EN 1991-1-1 Annex A, Table A.2 (masonry by unit type, EN 771-1):
#    solid clay brickwork about 19 kN/m^3, divided by g.
#  - compressive: EN 1996-1-1 eq. (3.1), fk = K fb^0.7 fm^0.3 with K = 0.55
#    (Table 3.3, Group 1 clay, general-purpose mortar): 0.55 x 20^0.7 x 10^0.3 = 8.9 MPa.
#  - tensile: EN 1996-1-1 3.6.3, flexural strength with the failure plane parallel to
#    the bed joints, clay units, general-purpose mortar: fxk1 = 0.10 MPa.
#  - shear: EN 1996-1-1 Table 3.4, initial shear strength, clay units, M10-M20: fvk0 = 0.30 MPa.
#  - friction: EN 1996-1-1 eq. (3.5), fvk = fvk0 + 0.4 sigma_d, i.e. mu = 0.4 on bed joints.
CLAY_BRICK_MASONRY = Material(
    name="masonry",
    density_kg_m3=19.0e3 / G,
    compressive_strength_pa=0.55 * 20.0 ** 0.7 * 10.0 ** 0.3 * 1e6,
    tensile_strength_pa=0.10e6,
    shear_strength_pa=0.30e6,
    friction=0.4,
    cells_per_m3=3.0,
)

MATERIALS: dict[str, Material] = {m.name: m for m in (REINFORCED_CONCRETE, CLAY_BRICK_MASONRY)}

# Numbers a preset may override, with the range each must stay in.
OVERRIDABLE = {
    "density_kg_m3": (100.0, 20000.0),
    "compressive_strength_pa": (1.0e3, 1.0e9),
    "tensile_strength_pa": (1.0e2, 1.0e9),
    "shear_strength_pa": (1.0e2, 1.0e9),
    "friction": (0.0, 2.0),
    "cells_per_m3": (0.01, 1000.0),
}


def with_overrides(overrides: dict, problems: list[str], key: str = "materials") -> dict[str, Material]:
    """The built-in materials with a preset's `[materials.<name>]` numbers applied.

    Each problem is appended to `problems` with its dotted key and allowed range.
    """
    result = dict(MATERIALS)
    if not isinstance(overrides, dict):
        problems.append(f"{key}: expected tables [{key}.<material>], got {type(overrides).__name__} {shown(overrides)}")
        return result
    for name, values in overrides.items():
        where = f"{key}.{name}"
        if name not in MATERIALS:
            problems.append(unknown(where, "material", MATERIALS))
            continue
        if not isinstance(values, dict):
            problems.append(f"{where}: expected a table of numbers, got {shown(values)}")
            continue
        changed = {}
        for field_name, value in values.items():
            if field_name not in OVERRIDABLE:
                problems.append(unknown(f"{where}.{field_name}", "key", OVERRIDABLE))
                continue
            lo, hi = OVERRIDABLE[field_name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"{where}.{field_name}: expected a number, got {shown(value)}")
            elif not math.isfinite(value) or not lo <= value <= hi:
                problems.append(f"{where}.{field_name}: {value} is outside the allowed range [{lo:g}, {hi:g}]")
            else:
                changed[field_name] = float(value)
        result[name] = dataclasses.replace(MATERIALS[name], **changed)
    return result
