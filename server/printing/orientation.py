"""Which way up to print a part, and where it goes on the build plate.

Candidates: the part rests on one of its convex hull's largest flat facets (a stable base), or on one
of the six axis-aligned sides; each candidate is then turned about Z to its tightest footprint
rectangle, so its bounding box (`box_mm`, z up) is what the fleet compares with build volumes.

Ranking depends on the technology: resin, metal and ceramic print time grows with the number of
layers, so they minimize height; FDM and bio extrusion need support under overhangs, so they minimize
the support area (faces facing down more than 45° from the vertical, projected on the plate, except
those resting on it). Ties go to the other criterion, then to the candidate's index: deterministic.

`place` finds the turn about Z at which the chosen box fits a printer (diagonally if need be, with the
same rule as `fit.fit_box`) and records the 4x4 transform from the input mesh's coordinates to the
build plate's, the part's bounding box starting at the origin. Pure: trimesh and numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.spatial import ConvexHull, QhullError

from server.printing.drivers.base import BuildVolume
from server.printing.fit import Box, fit_box
from server.printing.fleet import Technology

OVERHANG_DEG = 45.0
ON_PLATE_MM = 0.1  # a face this close to the lowest point rests on the plate and needs no support
SAME_BASE_DEG = 1.0  # candidates whose down directions are closer than this are one candidate
MINIMIZE_HEIGHT = frozenset({Technology.SLA, Technology.METAL, Technology.CERAMIC})

Matrix = tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class Orientation:
    index: int
    base: str  # "hull facet 3 (1234 mm²)", "axis -z", ...
    rotation: Matrix  # 3x3, input mesh -> oriented (base down, tightest footprint along x and y)
    box_mm: Box  # bounding box after `rotation`, z up
    support_area_mm2: float

    @property
    def height_mm(self) -> float:
        return self.box_mm[2]


@dataclass(frozen=True)
class Placement:
    orientation: Orientation
    turn_deg: float  # about Z, after `orientation.rotation`, to fit the printer
    transform: Matrix  # 4x4 row-major: input mesh -> build plate, part's bounding box from (0, 0, 0)
    extents_mm: Box

    def matrix(self) -> np.ndarray:
        return np.array(self.transform, dtype=np.float64)


def candidate_orientations(mesh: trimesh.Trimesh, *, max_facets: int = 12) -> tuple[Orientation, ...]:
    """The largest hull facets as bases, then the six axis-aligned sides, duplicates dropped."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    hull_points = _hull_points(vertices)
    downs: list[tuple[str, np.ndarray]] = []
    for normal, area in _hull_facets(hull_points)[:max_facets]:
        downs.append((f"hull facet {len(downs)} ({area:.0f} mm²)", normal))
    for axis, name in enumerate("xyz"):
        for sign in (-1.0, 1.0):
            direction = np.zeros(3)
            direction[axis] = sign
            downs.append((f"axis {'-' if sign < 0 else '+'}{name}", direction))
    cos_same = np.cos(np.radians(SAME_BASE_DEG))
    kept: list[tuple[str, np.ndarray]] = []
    for name, down in downs:
        if all(float(down @ other) < cos_same for _, other in kept):
            kept.append((name, down))
    normals = np.asarray(mesh.face_normals, dtype=np.float64)
    areas = np.asarray(mesh.area_faces, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    result = []
    for index, (name, down) in enumerate(kept):
        rotation = _in_plane_tightest(hull_points, _down_to_minus_z(down))
        points = hull_points @ rotation.T
        box = tuple(float(v) for v in np.ptp(points, axis=0))
        support = _support_area(vertices @ rotation[2], faces, normals @ rotation[2], areas)
        result.append(Orientation(index, name, _tuple(rotation), (box[0], box[1], box[2]), support))
    return tuple(result)


def rank(candidates: tuple[Orientation, ...], technology: Technology) -> tuple[Orientation, ...]:
    if technology in MINIMIZE_HEIGHT:
        return tuple(sorted(candidates, key=lambda o: (round(o.height_mm, 3), round(o.support_area_mm2), o.index)))
    return tuple(sorted(candidates, key=lambda o: (round(o.support_area_mm2), round(o.height_mm, 3), o.index)))


def place(mesh: trimesh.Trimesh, orientation: Orientation, volume: BuildVolume) -> Placement | None:
    """Turn the oriented part about Z until its box fits the volume; None when it does not fit."""
    turn_deg = fit_box(orientation.box_mm, volume)
    if turn_deg is None:
        return None
    rad = np.radians(turn_deg)
    turn = np.array([[np.cos(rad), -np.sin(rad), 0.0], [np.sin(rad), np.cos(rad), 0.0], [0.0, 0.0, 1.0]])
    rotation = turn @ np.array(orientation.rotation)
    points = _hull_points(np.asarray(mesh.vertices, dtype=np.float64)) @ rotation.T
    transform = np.eye(4)
    transform[:3, :3] = rotation
    transform[:3, 3] = -points.min(axis=0)
    extents = np.ptp(points, axis=0)
    return Placement(
        orientation, turn_deg, _tuple(transform), (float(extents[0]), float(extents[1]), float(extents[2]))
    )


def best_placement(
    mesh: trimesh.Trimesh, candidates: tuple[Orientation, ...], technology: Technology, volume: BuildVolume
) -> Placement | None:
    """The best-ranked candidate for this technology that fits the volume."""
    for orientation in rank(candidates, technology):
        if (placement := place(mesh, orientation, volume)) is not None:
            return placement
    return None


def _hull_points(vertices: np.ndarray) -> np.ndarray:
    try:
        return vertices[ConvexHull(vertices).vertices]
    except (QhullError, ValueError):  # flat or degenerate: every vertex is on the hull anyway
        return vertices


def _hull_facets(points: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """(outward normal, area) of the hull's flat facets (coplanar triangles merged), largest first."""
    try:
        hull = ConvexHull(points)
    except (QhullError, ValueError):
        return []
    # qhull's equations are outward unit normals with offsets; coplanar triangles share them
    planes = np.round(hull.equations, 6)
    tri = points[hull.simplices]
    tri_areas = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    unique, inverse = np.unique(planes, axis=0, return_inverse=True)
    facet_areas = np.bincount(inverse.ravel(), weights=tri_areas, minlength=len(unique))
    order = np.lexsort((np.arange(len(unique)), -facet_areas))
    return [(unique[i, :3] / np.linalg.norm(unique[i, :3]), float(facet_areas[i])) for i in order]


def _down_to_minus_z(down: np.ndarray) -> np.ndarray:
    """A rotation taking the direction `down` to -Z (Rodrigues; a half turn about X when opposite)."""
    target = np.array([0.0, 0.0, -1.0])
    axis = np.cross(down, target)
    sin, cos = float(np.linalg.norm(axis)), float(down @ target)
    if sin < 1e-12:
        return np.eye(3) if cos > 0 else np.diag([1.0, -1.0, -1.0])
    k = axis / sin
    skew = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + sin * skew + (1 - cos) * (skew @ skew)


def _in_plane_tightest(points: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Follow `rotation` with the turn about Z that gives the smallest footprint rectangle (its edges
    lie along a hull edge: rotating calipers), the longer side along X."""
    xy = (points @ rotation.T)[:, :2]
    try:
        ring = xy[ConvexHull(xy).vertices]
    except (QhullError, ValueError):
        ring = xy
    edges = np.roll(ring, -1, axis=0) - ring
    angles = np.unique(np.round(np.mod(-np.arctan2(edges[:, 1], edges[:, 0]), np.pi / 2), 9))
    angles = np.concatenate([[0.0], angles])
    cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
    x = ring[:, 0] * cos - ring[:, 1] * sin
    y = ring[:, 0] * sin + ring[:, 1] * cos
    width, depth = np.ptp(x, axis=1), np.ptp(y, axis=1)
    best = int(np.argmin(np.round(width * depth, 6)))
    angle = float(angles[best]) + (np.pi / 2 if depth[best] > width[best] else 0.0)
    turn = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    return turn @ rotation


def _support_area(z: np.ndarray, faces: np.ndarray, normal_z: np.ndarray, areas: np.ndarray) -> float:
    """Projected area of the downward faces steeper than the overhang limit, except those on the plate."""
    overhanging = normal_z < -np.cos(np.radians(OVERHANG_DEG))
    on_plate = z[faces].max(axis=1) <= z.min() + ON_PLATE_MM
    needs = overhanging & ~on_plate
    return float((areas[needs] * -normal_z[needs]).sum())


def _tuple(matrix: np.ndarray) -> Matrix:
    return tuple(tuple(float(v) for v in row) for row in matrix)
