"""Distance from points to a triangle surface, vectorized: a k-d tree over points sampled densely on the
triangles proposes a few candidate triangles per query point, and the exact closest point on each
candidate decides. The sign (outside positive) comes from the pseudo-normal of the closest feature:
the mean normal of the candidates that tie for closest (two faces at an edge, a fan at a vertex).

If the true closest triangle is not among the candidates, the distance returned is still an upper
bound no more than `spacing_mm` too large; with samples at most `spacing_mm` apart that happens only
on triangles far from any query point that matters.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from trimesh.triangles import closest_point as closest_on_triangles

CHUNK_POINTS = 50_000


class SurfaceDistance:
    def __init__(self, triangles: np.ndarray, spacing_mm: float, candidates: int = 6) -> None:
        """`triangles` (M, 3, 3) LPS mm, outward by their winding."""
        if len(triangles) == 0:
            raise ValueError("no triangles to measure distance to")
        self.triangles = np.asarray(triangles, dtype=np.float64)
        normals = np.cross(self.triangles[:, 1] - self.triangles[:, 0], self.triangles[:, 2] - self.triangles[:, 0])
        lengths = np.linalg.norm(normals, axis=1, keepdims=True)
        self.normals = np.divide(normals, lengths, out=np.zeros_like(normals), where=lengths > 0)
        samples, owner = _sample_triangles(self.triangles, spacing_mm)
        self._tree = cKDTree(samples)
        self._owner = owner
        self._k = min(candidates, len(samples))
        self.spacing_mm = spacing_mm

    def coarse(self, points: np.ndarray) -> np.ndarray:
        """Distance to the nearest sample: at most `spacing_mm` more than the true distance."""
        return self._tree.query(points, k=1)[0]

    def signed(self, points: np.ndarray) -> np.ndarray:
        """Signed distance, positive on the side the normals point to."""
        out = np.empty(len(points))
        for start in range(0, len(points), CHUNK_POINTS):
            out[start : start + CHUNK_POINTS] = self._signed_chunk(points[start : start + CHUNK_POINTS])
        return out

    def unsigned(self, points: np.ndarray) -> np.ndarray:
        return np.abs(self.signed(points))

    def _signed_chunk(self, points: np.ndarray) -> np.ndarray:
        n = len(points)
        _d, nearest = self._tree.query(points, k=self._k)
        candidates = self._owner[nearest.reshape(n, -1)]
        candidates.sort(axis=1)
        fresh = np.ones_like(candidates, dtype=bool)
        fresh[:, 1:] = candidates[:, 1:] != candidates[:, :-1]  # a face proposed twice counts once
        repeated = np.repeat(points, candidates.shape[1], axis=0)
        closest = closest_on_triangles(self.triangles[candidates.ravel()], repeated).reshape(n, -1, 3)
        offsets = points[:, None, :] - closest
        distances = np.linalg.norm(offsets, axis=2)
        distances[~fresh] = np.inf
        best = distances.min(axis=1)
        tie = fresh & (distances <= best[:, None] * (1 + 1e-9) + 1e-12)
        pseudo_normal = (self.normals[candidates] * tie[:, :, None]).sum(axis=1)
        best_offset = offsets[np.arange(n), np.argmin(distances, axis=1)]
        sign = np.where(np.einsum("ij,ij->i", best_offset, pseudo_normal) < 0, -1.0, 1.0)
        return sign * best


def _sample_triangles(triangles: np.ndarray, spacing_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Points on a barycentric grid per triangle, fine enough that samples are ≤ spacing_mm apart."""
    edges = np.linalg.norm(triangles - np.roll(triangles, 1, axis=1), axis=2).max(axis=1)
    steps = np.clip(np.ceil(edges / spacing_mm), 1, 64).astype(np.int64)
    samples, owners = [], []
    for n in np.unique(steps).tolist():
        group = np.flatnonzero(steps == n)
        i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
        keep = i + j <= n
        a, b = i[keep] / n, j[keep] / n
        weights = np.stack([1 - a - b, a, b], axis=1)  # (S, 3)
        points = np.einsum("sk,mkd->msd", weights, triangles[group])
        samples.append(points.reshape(-1, 3))
        owners.append(np.repeat(group, len(weights)))
    return np.concatenate(samples), np.concatenate(owners)
