"""Destruction without Blender: materials, layout, Voronoi fracture and contacts (plain numpy)."""
import dataclasses

import numpy as np
import pytest

from addon.core.destruction import fracture as fx
from addon.core.destruction.layout import Element, LayoutError, layout
from addon.core.destruction.materials import MATERIALS, with_overrides
from addon.core.preset import load_preset


def small_building(**changes):
    return dataclasses.replace(load_preset().building, **{"storeys": 2, "bays_x": 2, "bays_y": 1, "walls": "masonry",
                                                          "walls_from_storey": 0, **changes})


def test_materials_carry_the_cited_values():
    concrete, masonry = MATERIALS["concrete"], MATERIALS["masonry"]
    assert concrete.compressive_strength_pa == 25e6 and concrete.tensile_strength_pa == 2.6e6  # EN 1992-1-1 T3.1
    assert concrete.density_kg_m3 == pytest.approx(2549, abs=1)  # 25 kN/m^3, EN 1991-1-1 T A.1
    assert masonry.compressive_strength_pa == pytest.approx(8.93e6, rel=1e-3)  # EN 1996-1-1 eq. 3.1
    assert masonry.tensile_strength_pa < concrete.tensile_strength_pa


def test_a_preset_overrides_material_numbers_and_bad_ones_are_named():
    problems = []
    mats = with_overrides({"concrete": {"tensile_strength_pa": 1.5e6}}, problems)
    assert not problems and mats["concrete"].tensile_strength_pa == 1.5e6
    assert mats["concrete"].compressive_strength_pa == 25e6 and MATERIALS["concrete"].tensile_strength_pa == 2.6e6
    with_overrides({"steel": {}, "masonry": {"friction": float("nan"), "colour": 1}}, problems)
    text = "\n".join(problems)
    assert "materials.steel: unknown material" in text
    assert "materials.masonry.friction: nan is outside the allowed range [0, 2]" in text
    assert "materials.masonry.colour: unknown key" in text


def test_layout_has_every_element_kind_and_no_overlaps():
    elements = layout(small_building())
    kinds = {e.kind for e in elements}
    assert kinds == {"column", "beam", "slab", "wall"}
    lo = np.array([e.lo for e in elements])
    hi = np.array([e.hi for e in elements])
    inter = np.clip(np.minimum(hi[:, None], hi[None]) - np.maximum(lo[:, None], lo[None]), 0, None).prod(axis=2)
    np.fill_diagonal(inter, 0)
    assert inter.max() < 1e-9, "elements overlap"
    assert lo[:, 2].min() == 0.0 and all(e.material == "masonry" for e in elements if e.kind == "wall")


def test_windows_leave_holes_in_the_walls():
    b = small_building()
    with_windows = sum(e.volume for e in layout(b) if e.kind == "wall")
    solid = sum(e.volume for e in layout(dataclasses.replace(b, window_width_m=0.0)) if e.kind == "wall")
    panels = 2 * (b.bays_x + b.bays_y) * b.storeys
    assert solid - with_windows == pytest.approx(panels * b.window_width_m * b.window_height_m * b.wall_thickness_m)


def test_openings_larger_than_the_wall_are_refused_by_key():
    with pytest.raises(LayoutError, match="building.window_width_m"):
        layout(small_building(window_width_m=3.9))
    with pytest.raises(LayoutError, match="building.window_height_m"):
        layout(small_building(window_height_m=2.5))


def box(size=(1.0, 2.0, 3.0), center=(0.3, -0.2, 1.5)):
    return Element("e", "column", "concrete", center, size, 0)


def test_cells_conserve_the_box_volume_and_are_deterministic():
    frags, _ = fx.fracture_element(box(), 60, np.random.default_rng([7, 0]))
    assert sum(f.volume for f in frags) == pytest.approx(6.0, rel=5e-3)
    assert all(f.volume > 0 for f in frags)
    again, _ = fx.fracture_element(box(), 60, np.random.default_rng([7, 0]))
    assert all(np.array_equal(a.vertices, b.vertices) for a, b in zip(frags, again))
    other, _ = fx.fracture_element(box(), 60, np.random.default_rng([8, 0]))
    assert not np.array_equal(frags[0].vertices, other[0].vertices)


def test_every_vertex_of_a_cell_is_nearest_its_own_point():
    """The Voronoi property, checked directly: no vertex is closer to another seed."""
    rng = np.random.default_rng([3, 0])
    element = box()
    points = np.array(element.lo) + np.random.default_rng([3, 0]).random((40, 3)) * np.array(element.size)
    frags, _ = fx.fracture_element(element, 40, rng)
    for i, frag in enumerate(frags):
        d = np.linalg.norm(frag.vertices[:, None] - points[None], axis=2)
        assert (d[:, i] <= d.min(axis=1) + 1e-9).all()


def test_a_box_cut_in_two_has_the_cut_face_as_contact_area():
    element = box(size=(2.0, 1.0, 1.0), center=(0, 0, 0))
    frags, pairs = fx.fracture_element(element, 2, np.random.default_rng(0))
    (i, j, area, normal), = pairs
    # Recompute the cut exactly: the plane through the midpoint, normal to p1 - p0, inside the box.
    points = np.array(element.lo) + np.random.default_rng(0).random((2, 3)) * np.array(element.size)
    assert np.allclose(normal, (points[1] - points[0]) / np.linalg.norm(points[1] - points[0]))
    cap = [f for f, lab in zip(frags[0].faces, frags[0].labels) if lab == 1]
    assert area == pytest.approx(fx.polygon_area(frags[0].vertices[cap[0]]))
    cap_b = [f for f, lab in zip(frags[1].faces, frags[1].labels) if lab == 0]
    assert area == pytest.approx(fx.polygon_area(frags[1].vertices[cap_b[0]]))
    # A cut across the thin direction of an axis-aligned split: 2 points placed by hand.
    frags2, pairs2 = fx.fracture_element(element, 2, _FixedPoints([[-0.5, 0, 0], [0.5, 0, 0]]))
    assert pairs2[0][2] == pytest.approx(1.0) and frags2[0].volume == pytest.approx(1.0)


class _FixedPoints:
    """An rng stand-in that hands out chosen points (in box-relative coordinates in [0, 1))."""
    def __init__(self, world_points):
        self.world_points = np.array(world_points, float)

    def random(self, shape):
        return (self.world_points - np.array([-1.0, -0.5, -0.5])) / np.array([2.0, 1.0, 1.0])


def test_building_contacts_join_neighbouring_elements_and_the_ground():
    b = small_building()
    elements = layout(b)
    result = fx.fracture_building(elements, MATERIALS, seed=5)
    total = sum(e.volume for e in elements)
    assert sum(f.volume for f in result.fragments) == pytest.approx(total, rel=5e-3)
    for index, element in enumerate(elements):
        own = sum(f.volume for f in result.fragments if f.element == index)
        assert own == pytest.approx(element.volume, rel=5e-3)
    kinds = {(elements[result.fragments[c.a].element].kind, elements[result.fragments[c.b].element].kind)
             for c in result.contacts if c.b != fx.GROUND and result.fragments[c.a].element != result.fragments[c.b].element}
    assert {("column", "slab"), ("beam", "slab"), ("wall", "beam")} <= kinds
    # Ground contacts: the footprint of every ground-storey column and wall, exactly.
    ground = sum(c.area for c in result.contacts if c.b == fx.GROUND)
    footprint = sum(e.size[0] * e.size[1] for e in elements if e.lo[2] == 0.0)
    assert ground == pytest.approx(footprint, rel=1e-9)
    # Column top on slab: the column's cross-section is fully covered by slab fragments.
    col = next(i for i, e in enumerate(elements) if e.name == "Column.0.1.0")
    top = sum(c.area for c in result.contacts if c.b != fx.GROUND and result.fragments[c.a].element == col
              and c.normal == (0.0, 0.0, 1.0))
    assert top == pytest.approx(b.column_size_m ** 2, rel=1e-9)
    # Every fragment is connected to something.
    touched = {c.a for c in result.contacts} | {c.b for c in result.contacts}
    assert touched >= set(range(len(result.fragments)))


def test_same_seed_same_fragments():
    elements = layout(small_building())
    a = fx.fracture_building(elements, MATERIALS, seed=11)
    b = fx.fracture_building(elements, MATERIALS, seed=11)
    assert len(a.fragments) == len(b.fragments) and a.contacts == b.contacts
    assert all(np.array_equal(p.vertices, q.vertices) for p, q in zip(a.fragments, b.fragments))


def test_bond_strength_follows_the_load_path():
    """auto: column contacts and near-vertical normals carry weight in compression; the rest tension."""
    from addon.core.destruction import bonds
    elements = layout(small_building())
    result = fx.fracture_building(elements, MATERIALS, seed=2)
    made = bonds.make_bonds(result, MATERIALS, "auto")
    kinds = [elements[f.element].kind for f in result.fragments]
    for contact, bond in zip(result.contacts, made):
        a = elements[result.fragments[contact.a].element]
        b_kind = "ground" if contact.b == fx.GROUND else kinds[contact.b]
        column = "column" in (a.kind, b_kind)
        mode = "compressive" if column or abs(contact.normal[2]) >= 0.5 else "tensile"
        mats = {a.material} | ({elements[result.fragments[contact.b].element].material} if contact.b != fx.GROUND else set())
        sigma = min(MATERIALS[m].strength(mode) for m in mats)
        assert bond.force_n == pytest.approx(sigma * contact.area)
    wall_side = [b for c, b in zip(result.contacts, made) if kinds[c.a] == "wall" and c.b != fx.GROUND
                 and kinds[c.b] == "wall" and abs(c.normal[2]) < 0.5]
    assert wall_side and all(b.force_n == pytest.approx(MATERIALS["masonry"].tensile_strength_pa * b.area_m2)
                             for b in wall_side)
