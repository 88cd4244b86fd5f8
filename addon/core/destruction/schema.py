"""The preset sections destruction adds: `[materials.<name>]`, `[fracture]`, `[simulation]`.

`[fracture]` and `[simulation]` are flat tables checked like every other section;
`[materials]` holds one sub-table per material and is checked here (see materials.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .materials import MATERIALS, Material, with_overrides


def _range(lo=None, hi=None, **extra):
    return {"min": lo, "max": hi, **extra}


@dataclass(frozen=True)
class FractureSettings:
    # Multiplies every material's cells_per_m3 (materials.py) for the whole building.
    cell_density_scale: float = field(default=1.0, metadata=_range(0.01, 100.0))
    # Refused before any work above this: each fragment is a rigid body and a mesh.
    max_fragments: int = field(default=20000, metadata=_range(1, 100000))


@dataclass(frozen=True)
class SimulationSettings:
    substeps: int = field(default=10, metadata=_range(1, 100))
    solver_iterations: int = field(default=40, metadata=_range(1, 1000))
    time_scale: float = field(default=1.0, metadata=_range(0.01, 10.0))
    # Simulated before the shot's first frame so the structure settles; not rendered. It
    # must fit before shot.frame_start (see cross_checks), so a preset that wants one
    # starts its shot later: the shipped presets use 24 frames and start at frame 25.
    preroll_frames: int = field(default=0, metadata=_range(0, 1000))
    # The first frames of the pre-roll run with breaking disabled (the start-up impulse).
    warmup_frames: int = field(default=0, metadata=_range(0, 1000))
    constraint_type: str = field(default="FIXED", metadata={"choices": ("FIXED", "GENERIC")})
    # Which strength of the weaker material a bond's threshold uses ("auto": see bonds.py).
    bond_strength: str = field(default="auto", metadata={"choices": ("auto", "tensile", "shear", "compressive")})
    # Fragments farther than this from rest (m) count as moved in shot.json's per-frame records.
    moved_threshold_m: float = field(default=0.02, metadata=_range(0.0001, 10.0))


SECTIONS = {"fracture": FractureSettings, "simulation": SimulationSettings}


def parse_materials(data, problems: list[str]) -> dict[str, Material]:
    return with_overrides(data if data is not None else {}, problems)


def materials_to_dict(materials: dict[str, Material]) -> dict:
    """The `[materials]` tables as a preset writes them (every number, so it round-trips)."""
    return {name: {k: getattr(m, k) for k in ("density_kg_m3", "compressive_strength_pa", "tensile_strength_pa",
                                               "shear_strength_pa", "friction", "cells_per_m3")}
            for name, m in materials.items()}


def cross_checks(preset) -> list[str]:
    """Problems that involve more than one key."""
    from . import triggers
    from .layout import check
    problems = check(preset.building) + triggers.check(preset.triggers, preset)
    sim = preset.simulation
    if sim.warmup_frames > sim.preroll_frames:
        problems.append(f"simulation.warmup_frames: {sim.warmup_frames} must not exceed simulation.preroll_frames "
                        f"{sim.preroll_frames}")
    if preset.shot.frame_start - sim.preroll_frames < 0:
        # Measured: a rigid-body cache that starts at frame -11 or earlier comes back from
        # shot.blend re-simulated, not as baked, so farm chunks would differ from one run.
        problems.append(f"simulation.preroll_frames: {sim.preroll_frames} frames do not fit before shot.frame_start "
                        f"{preset.shot.frame_start}; the pre-roll must start at frame 0 or later, so start the shot at "
                        f"frame {sim.preroll_frames} or later, or shorten the pre-roll")
    if preset.building.material not in MATERIALS:  # pragma: no cover - choices already refuse it
        problems.append(f"building.material: unknown material {preset.building.material!r}")
    if not problems:
        problems += fragment_budget(preset)
    return problems


def fragment_budget(preset) -> list[str]:
    """Refuse a building whose fragment count is above [fracture].max_fragments, before any work."""
    from .fracture import cell_count
    from .layout import layout
    count = sum(cell_count(e, preset.materials[e.material], preset.fracture.cell_density_scale)
                for e in layout(preset.building))
    if count > preset.fracture.max_fragments:
        return [f"fracture.cell_density_scale: this building would break into {count} fragments, more than "
                f"fracture.max_fragments = {preset.fracture.max_fragments}; lower the density or the building size, "
                f"or raise max_fragments (each fragment is a rigid body; about 4,000 simulate at ~2 s/frame)"]
    return []
