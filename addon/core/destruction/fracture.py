"""Voronoi fracture of box elements, and the contacts between the fragments.

Each element's box is cut into the Voronoi cells of seeded random points: a cell is the
box clipped by the bisector half-spaces towards every other point. Cells of a box are
convex polyhedra; we clip with numpy and stop as soon as no farther point can reach the
cell (a bisector lies at half the distance to its point, so once that exceeds the
cell's farthest vertex, no later plane can cut it). This is exact, and only a cell's
near neighbours are ever tried.

Each face remembers what made it: a neighbour cell (its shared face, whose area is the
contact area of the pair) or one of the box's six sides (where the fragment may touch
a neighbouring element; contacts there are the overlaps of the two sides' faces).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .layout import Element
from .materials import Material

# Box sides as face labels: -1 - side, side = 2 * axis + (0 for the low side, 1 for the high).
_BOX_VERTS = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
# Vertex loops counter-clockwise seen from outside, in side order -x, +x, -y, +y, -z, +z.
_BOX_FACES = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]

# Cells per cubic metre are the material's, times this per element type: columns and
# beams carry the load paths and break into more pieces per volume than slab interiors.
KIND_DENSITY = {"column": 3.0, "beam": 2.0, "slab": 1.0, "wall": 1.0}
MIN_CELLS = {"column": 3, "beam": 2, "slab": 4, "wall": 1}
# A face shared by two cells must be larger than this to count as a contact (m^2).
MIN_CONTACT_AREA = 1e-6


@dataclass
class Fragment:
    element: int                    # index into the layout
    vertices: np.ndarray            # (V, 3) world coordinates
    faces: list[list[int]]          # vertex loops, counter-clockwise seen from outside
    labels: list[int]               # per face: neighbour cell (>= 0, element-local) or -1 - box side
    volume: float = 0.0
    centroid: np.ndarray = field(default_factory=lambda: np.zeros(3))


@dataclass(frozen=True)
class Contact:
    a: int           # fragment index
    b: int           # fragment index, or GROUND
    area: float      # m^2
    normal: tuple[float, float, float]  # unit, from a towards b


GROUND = -1


def cell_count(element: Element, material: Material, density_scale: float = 1.0) -> int:
    n = element.volume * material.cells_per_m3 * KIND_DENSITY[element.kind] * density_scale
    return max(MIN_CELLS[element.kind], int(round(n)))


def _clip(verts, faces, labels, normal, offset, label, eps):
    """Keep the part of a convex polyhedron where normal . x <= offset."""
    s = verts @ normal - offset
    if not (s > eps).any():
        return verts, faces, labels
    if not (s < -eps).any():
        return None
    keep = s <= eps
    index = np.full(len(verts), -1)
    index[keep] = np.arange(int(keep.sum()))
    new = [verts[keep]]
    count = int(keep.sum())
    cuts: dict[tuple[int, int], int] = {}
    cap = [int(index[k]) for k in np.nonzero(np.abs(s) <= eps)[0]]
    out_faces, out_labels = [], []
    for face, lab in zip(faces, labels):
        loop = []
        n = len(face)
        for k in range(n):
            a, b = face[k], face[(k + 1) % n]
            if keep[a]:
                loop.append(int(index[a]))
            if (s[a] < -eps and s[b] > eps) or (s[a] > eps and s[b] < -eps):
                key = (a, b) if a < b else (b, a)
                if key not in cuts:
                    t = s[a] / (s[a] - s[b])
                    new.append((verts[a] + t * (verts[b] - verts[a]))[None])
                    cuts[key] = count
                    cap.append(count)
                    count += 1
                loop.append(cuts[key])
        if len(loop) >= 3:
            out_faces.append(loop)
            out_labels.append(lab)
    verts = np.concatenate(new)
    if len(cap) >= 3:
        pts = verts[cap]
        centre = pts.mean(axis=0)
        u = pts[0] - centre
        u /= np.linalg.norm(u)
        v = np.cross(normal, u)
        rel = pts - centre
        order = np.argsort(np.arctan2(rel @ v, rel @ u))  # counter-clockwise around +normal
        out_faces.append([cap[k] for k in order])
        out_labels.append(label)
    return verts, out_faces, out_labels


def _volume_centroid(verts, faces):
    """Signed-tetrahedron sums over a fan of each face (divergence theorem)."""
    vol, moment = 0.0, np.zeros(3)
    for face in faces:
        p0 = verts[face[0]]
        p1, p2 = verts[face[1:-1]], verts[face[2:]]
        v6 = np.einsum("ij,ij->i", np.broadcast_to(p0, p1.shape), np.cross(p1, p2))
        vol += v6.sum()
        moment += (v6[:, None] * (p0 + p1 + p2)).sum(axis=0)
    vol /= 6.0
    return vol, (moment / (24.0 * vol) if vol > 0 else verts.mean(axis=0))


def polygon_area(points: np.ndarray) -> float:
    """Area of a planar polygon in 3-D (half the norm of the summed cross products)."""
    return 0.5 * float(np.linalg.norm(np.cross(points, np.roll(points, -1, axis=0)).sum(axis=0)))


def fracture_element(element: Element, n_cells: int, rng: np.random.Generator) -> tuple[list[Fragment], list[tuple[int, int, float, np.ndarray]]]:
    """The cells of one element's box, and the (i, j, area, normal i->j) of each shared face."""
    lo, size = np.array(element.lo), np.array(element.size)
    box_verts = lo + _BOX_VERTS * size
    points = lo + rng.random((n_cells, 3)) * size
    eps = 1e-9 * float(size.max())
    fragments, pairs = [], []
    for i in range(n_cells):
        verts, faces, labels = box_verts, [list(f) for f in _BOX_FACES], [-1 - k for k in range(6)]
        delta = points - points[i]
        dist = np.sqrt(np.einsum("ij,ij->i", delta, delta))
        reach = float(np.sqrt(((verts - points[i]) ** 2).sum(axis=1)).max())
        for j in np.argsort(dist)[1:]:
            if dist[j] / 2 > reach:
                break
            normal = delta[j] / dist[j]
            mid = points[i] + delta[j] / 2
            clipped = _clip(verts, faces, labels, normal, float(normal @ mid), int(j), eps)
            if clipped is None:  # cannot happen for distinct points; guard against coincident ones
                break
            if clipped[0] is not verts:
                verts, faces, labels = clipped
                reach = float(np.sqrt(((verts - points[i]) ** 2).sum(axis=1)).max())
        used = sorted({v for f in faces for v in f})
        remap = {old: new for new, old in enumerate(used)}
        verts = verts[used]
        faces = [[remap[v] for v in f] for f in faces]
        vol, centroid = _volume_centroid(verts, faces)
        fragments.append(Fragment(-1, verts, faces, labels, vol, centroid))
        for face, lab in zip(faces, labels):
            if lab > i:
                area = polygon_area(verts[face])
                if area > MIN_CONTACT_AREA:
                    pairs.append((i, lab, area, (points[lab] - points[i]) / dist[lab]))
    return fragments, pairs


def _ccw(poly: np.ndarray) -> np.ndarray:
    x, y = poly[:, 0], poly[:, 1]
    signed = (x * np.roll(y, -1) - np.roll(x, -1) * y).sum()
    return poly if signed >= 0 else poly[::-1]


def convex_overlap_area(p: np.ndarray, q: np.ndarray) -> float:
    """Area of the intersection of two convex 2-D polygons (Sutherland-Hodgman)."""
    p, q = _ccw(p), _ccw(q)
    out = list(p)
    for k in range(len(q)):
        a, b = q[k], q[(k + 1) % len(q)]
        edge = b - a
        if not out:
            return 0.0
        pts = np.array(out)
        side = edge[0] * (pts[:, 1] - a[1]) - edge[1] * (pts[:, 0] - a[0])  # >= 0: inside (left)
        out = []
        for m in range(len(pts)):
            c, d = pts[m], pts[(m + 1) % len(pts)]
            sc, sd = side[m], side[(m + 1) % len(pts)]
            if sc >= 0:
                out.append(c)
            if (sc >= 0) != (sd >= 0):
                out.append(c + (d - c) * (sc / (sc - sd)))
    if len(out) < 3:
        return 0.0
    pts = np.array(out)
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * abs(float((x * np.roll(y, -1) - np.roll(x, -1) * y).sum()))


def touching_elements(elements: list[Element], tol: float = 1e-6) -> list[tuple[int, int, int]]:
    """(a, b, axis) for each pair of boxes where a's high side on `axis` lies on b's low side
    and the two sides overlap with a positive area."""
    lo = np.array([e.lo for e in elements])
    hi = np.array([e.hi for e in elements])
    out = []
    for axis in range(3):
        others = [k for k in range(3) if k != axis]
        meet = np.abs(hi[:, None, axis] - lo[None, :, axis]) < tol
        overlap = np.ones_like(meet)
        for k in others:
            overlap &= (np.minimum(hi[:, None, k], hi[None, :, k]) - np.maximum(lo[:, None, k], lo[None, :, k])) > tol
        for a, b in zip(*np.nonzero(meet & overlap)):
            out.append((int(a), int(b), axis))
    return out


@dataclass
class Fracture:
    fragments: list[Fragment]
    contacts: list[Contact]
    elements: list[Element]


def _side_faces(frags: list[int], fragments: list[Fragment], side: int, axis: int):
    others = [k for k in range(3) if k != axis]
    out = []
    for f in frags:
        frag = fragments[f]
        for face, lab in zip(frag.faces, frag.labels):
            if lab == -1 - side:
                poly = frag.vertices[face][:, others]
                out.append((f, poly, poly.min(axis=0), poly.max(axis=0)))
    return out


def fracture_building(elements: list[Element], materials: dict[str, Material], seed: int,
                      density_scale: float = 1.0) -> Fracture:
    """Fragments of every element, with contacts inside elements, between them and to the ground."""
    fragments: list[Fragment] = []
    contacts: list[Contact] = []
    by_element: list[list[int]] = []
    for index, element in enumerate(elements):
        rng = np.random.default_rng([seed, index])  # one stream per element: adding one changes no other
        cells, pairs = fracture_element(element, cell_count(element, materials[element.material], density_scale), rng)
        base = len(fragments)
        for frag in cells:
            frag.element = index
        fragments += cells
        by_element.append(list(range(base, base + len(cells))))
        contacts += [Contact(base + i, base + j, area, tuple(map(float, n))) for i, j, area, n in pairs]
    for a, b, axis in touching_elements(elements):
        normal = tuple(float(axis == k) for k in range(3))
        faces_a = _side_faces(by_element[a], fragments, 2 * axis + 1, axis)
        faces_b = _side_faces(by_element[b], fragments, 2 * axis, axis)
        for fa, pa, lo_a, hi_a in faces_a:
            for fb, pb, lo_b, hi_b in faces_b:
                if (np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b) > 0).all():
                    area = convex_overlap_area(pa, pb)
                    if area > MIN_CONTACT_AREA:
                        contacts.append(Contact(fa, fb, area, normal))
    for index, element in enumerate(elements):
        if abs(element.lo[2]) < 1e-6:
            for f, poly, _, _ in _side_faces(by_element[index], fragments, 4, 2):
                area = convex_overlap_area(poly, poly)
                contacts.append(Contact(f, GROUND, area, (0.0, 0.0, -1.0)))
    return Fracture(fragments, contacts, elements)
