"""The building as plain data: one axis-aligned box per structural element.

Columns stand on the bay grid; beams run between column faces under each slab; one
slab per bay spans column centre to column centre; exterior walls fill the perimeter
panels between columns under the beams, each split into solid boxes around a window.
Elements that meet share a face exactly (no gaps), so the fracture stage can find
the contacts between them. The ground is the plane z = 0.
"""
from __future__ import annotations

from dataclasses import dataclass

ELEMENT_KINDS = ("column", "beam", "slab", "wall")


@dataclass(frozen=True)
class Element:
    name: str
    kind: str          # one of ELEMENT_KINDS
    material: str      # a key of materials.MATERIALS
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    storey: int

    @property
    def lo(self) -> tuple[float, float, float]:
        return tuple(c - s / 2 for c, s in zip(self.center, self.size))

    @property
    def hi(self) -> tuple[float, float, float]:
        return tuple(c + s / 2 for c, s in zip(self.center, self.size))

    @property
    def volume(self) -> float:
        return self.size[0] * self.size[1] * self.size[2]


class LayoutError(ValueError):
    """A building that cannot be laid out; the message names the preset key."""


def _box(name, kind, material, lo, hi, storey) -> Element:
    return Element(name, kind, material,
                   tuple((a + b) / 2 for a, b in zip(lo, hi)), tuple(b - a for a, b in zip(lo, hi)), storey)


def check(b) -> list[str]:
    """Problems with a [building] table that its per-key ranges cannot catch alone."""
    problems = []
    clear_height = b.storey_height_m - b.slab_thickness_m - b.beam_depth_m
    if b.column_size_m >= b.bay_width_m:
        problems.append(f"building.column_size_m: {b.column_size_m} must be smaller than building.bay_width_m {b.bay_width_m}")
    if clear_height <= 0.2:
        problems.append(f"building.beam_depth_m: storey_height_m - slab_thickness_m - beam_depth_m must leave more than "
                        f"0.2 m of clear height, got {clear_height:.3f} m")
    if b.beam_width_m > b.column_size_m:
        problems.append(f"building.beam_width_m: {b.beam_width_m} must not exceed building.column_size_m {b.column_size_m}")
    if b.walls != "none":
        panel = b.bay_width_m - b.column_size_m
        if b.wall_thickness_m > b.column_size_m:
            problems.append(f"building.wall_thickness_m: {b.wall_thickness_m} must not exceed building.column_size_m "
                            f"{b.column_size_m}")
        if b.window_width_m > 0 and b.window_width_m > panel - 0.2:
            problems.append(f"building.window_width_m: {b.window_width_m} leaves less than 0.1 m of wall each side "
                            f"(at most {panel - 0.2:.2f} m for this bay and column size)")
        if b.window_width_m > 0 and b.sill_height_m + b.window_height_m > clear_height - 0.1:
            problems.append(f"building.window_height_m: sill_height_m + window_height_m = "
                            f"{b.sill_height_m + b.window_height_m:.2f} m leaves less than 0.1 m of wall above the "
                            f"window (the clear height under the beams is {clear_height:.2f} m)")
    return problems


def layout(b) -> list[Element]:
    """Every element of the building described by a BuildingSettings `b`, centred on the origin."""
    problems = check(b)
    if problems:
        raise LayoutError("; ".join(problems))
    w, h, t, c = b.bay_width_m, b.storey_height_m, b.slab_thickness_m, b.column_size_m
    nx, ny = b.bays_x, b.bays_y
    x0, y0 = -nx * w / 2, -ny * w / 2
    mat = b.material
    elements: list[Element] = []
    for s in range(b.storeys):
        z0 = s * h
        z_slab = z0 + h - t              # underside of this storey's slab
        z_beam = z_slab - b.beam_depth_m  # underside of its beams
        for i in range(nx + 1):
            for j in range(ny + 1):
                x, y = x0 + i * w, y0 + j * w
                elements.append(_box(f"Column.{s}.{i}.{j}", "column", mat,
                                     (x - c / 2, y - c / 2, z0), (x + c / 2, y + c / 2, z_slab), s))
        bw = b.beam_width_m / 2
        for i in range(nx):            # beams along x, between column faces
            for j in range(ny + 1):
                y = y0 + j * w
                elements.append(_box(f"BeamX.{s}.{i}.{j}", "beam", mat,
                                     (x0 + i * w + c / 2, y - bw, z_beam), (x0 + (i + 1) * w - c / 2, y + bw, z_slab), s))
        for i in range(nx + 1):        # beams along y
            for j in range(ny):
                x = x0 + i * w
                elements.append(_box(f"BeamY.{s}.{i}.{j}", "beam", mat,
                                     (x - bw, y0 + j * w + c / 2, z_beam), (x + bw, y0 + (j + 1) * w - c / 2, z_slab), s))
        for i in range(nx):
            for j in range(ny):
                # Edge bays reach the columns' outer faces, so every column top is covered.
                lo = (x0 + i * w - (c / 2 if i == 0 else 0), y0 + j * w - (c / 2 if j == 0 else 0), z_slab)
                hi = (x0 + (i + 1) * w + (c / 2 if i == nx - 1 else 0), y0 + (j + 1) * w + (c / 2 if j == ny - 1 else 0),
                      z0 + h)
                elements.append(_box(f"Slab.{s}.{i}.{j}", "slab", mat, lo, hi, s))
        if b.walls != "none" and s >= b.walls_from_storey:
            elements += _walls(b, s, z0, z_beam)
    return elements


def _walls(b, s: int, z0: float, z_top: float) -> list[Element]:
    """Perimeter panels between columns, under the beams, each with one centred window."""
    w, c, wt = b.bay_width_m, b.column_size_m, b.wall_thickness_m / 2
    nx, ny = b.bays_x, b.bays_y
    x0, y0 = -nx * w / 2, -ny * w / 2
    panels = []  # (name, axis along which the panel runs, start, end, fixed coordinate)
    for i in range(nx):
        for j, y in (("S", y0), ("N", -y0)):
            panels.append((f"{j}{i}", 0, x0 + i * w + c / 2, x0 + (i + 1) * w - c / 2, y))
    for j in range(ny):
        for i, x in (("W", x0), ("E", -x0)):
            panels.append((f"{i}{j}", 1, y0 + j * w + c / 2, y0 + (j + 1) * w - c / 2, x))
    out = []
    for tag, axis, a0, a1, fixed in panels:
        # Boxes in panel coordinates (along, up); the window is a hole in the middle.
        if b.window_width_m > 0:
            mid, half = (a0 + a1) / 2, b.window_width_m / 2
            sill, head = z0 + b.sill_height_m, z0 + b.sill_height_m + b.window_height_m
            parts = [("L", a0, mid - half, z0, z_top), ("R", mid + half, a1, z0, z_top),
                     ("B", mid - half, mid + half, z0, sill), ("T", mid - half, mid + half, head, z_top)]
        else:
            parts = [("P", a0, a1, z0, z_top)]
        for part, u0, u1, v0, v1 in parts:
            if axis == 0:
                lo, hi = (u0, fixed - wt, v0), (u1, fixed + wt, v1)
            else:
                lo, hi = (fixed - wt, u0, v0), (fixed + wt, u1, v1)
            out.append(_box(f"Wall.{s}.{tag}.{part}", "wall", b.walls, lo, hi, s))
    return out
