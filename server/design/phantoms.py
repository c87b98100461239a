"""Synthetic bone-like solids with known geometry, for tests, benchmarks and demos (LPS mm).

`bone_field` is a long bone along S: a tubular shaft that flares into a rounded head at the top and
two condyles at the bottom, blended with a smooth minimum so the surface has no creases. Its level
set is watertight by construction; `capsule_bone` is an exact union of primitives for when a
specific face count matters more than smoothness.
"""

from __future__ import annotations

import manifold3d
import numpy as np
import trimesh

from server.design.levelset import level_set
from server.design.manifolds import to_trimesh

SHAFT_RADIUS_MM = 11.0
HALF_LENGTH_MM = 55.0
BOUNDS = (-40.0, -30.0, -85.0, 40.0, 30.0, 90.0)


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip((points - a) @ ab / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


def _smooth_max(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """A blend of max(a, b) (the union of two inside-positive fields) with fillets of size k."""
    h = np.clip(0.5 + 0.5 * (a - b) / k, 0.0, 1.0)
    return b + (a - b) * h + k * h * (1 - h)


def bone_field(points: np.ndarray) -> np.ndarray:
    """Positive inside the phantom bone, roughly a signed distance in mm near the surface."""
    shaft = SHAFT_RADIUS_MM - _segment_distance(
        points, np.array([0.0, 0.0, -HALF_LENGTH_MM]), np.array([0.0, 0.0, HALF_LENGTH_MM])
    )
    # shaft slightly bent towards P, like a femur's anterior bow
    head = 17.0 - np.linalg.norm((points - np.array([9.0, 2.0, 68.0])) / np.array([1.0, 1.0, 1.1]), axis=1)
    neck = 8.5 - _segment_distance(points, np.array([0.0, 0.0, 50.0]), np.array([9.0, 2.0, 68.0]))
    condyle_l = 13.0 - np.linalg.norm((points - np.array([11.0, 3.0, -62.0])) / np.array([1.0, 1.3, 1.0]), axis=1)
    condyle_r = 12.0 - np.linalg.norm((points - np.array([-10.0, 3.0, -63.0])) / np.array([1.0, 1.25, 1.0]), axis=1)
    field = _smooth_max(shaft, neck, 4.0)
    field = _smooth_max(field, head, 4.0)
    field = _smooth_max(field, condyle_l, 6.0)
    return _smooth_max(field, condyle_r, 6.0)


def synthetic_bone(edge_mm: float = 1.2) -> trimesh.Trimesh:
    """The phantom as a watertight mesh (about 22k faces at the default edge length)."""
    solid, _evaluated = level_set(bone_field, BOUNDS, edge_mm)
    return to_trimesh(solid)


def capsule_bone(segments: int = 64, refine_to_mm: float | None = None) -> trimesh.Trimesh:
    """A shaft cylinder with a ball on top and two balls below, unioned exactly by manifold3d."""
    shaft = manifold3d.Manifold.cylinder(2 * HALF_LENGTH_MM, SHAFT_RADIUS_MM, -1.0, segments).translate(
        (0.0, 0.0, -HALF_LENGTH_MM)
    )
    head = manifold3d.Manifold.sphere(17.0, segments).translate((9.0, 2.0, 66.0))
    condyle_l = manifold3d.Manifold.sphere(13.0, segments).translate((11.0, 3.0, -60.0))
    condyle_r = manifold3d.Manifold.sphere(12.0, segments).translate((-10.0, 3.0, -61.0))
    solid = manifold3d.Manifold.batch_boolean([shaft, head, condyle_l, condyle_r], manifold3d.OpType.Add)
    if refine_to_mm is not None:
        solid = solid.refine_to_length(refine_to_mm)
    return to_trimesh(solid)
