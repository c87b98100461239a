"""The triangle mesh of a surface in patient LPS mm, its checks and measures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components


class SurfaceError(ValueError):
    """No surface can be made; the message says why."""


class MeshNotWatertight(SurfaceError):
    """The mesh has open or non-manifold edges, or inconsistent winding."""


@dataclass(frozen=True)
class Mesh:
    vertices_lps: np.ndarray  # (V, 3) float64, patient LPS mm
    faces: np.ndarray  # (F, 3) int32, counter-clockwise seen from outside


@dataclass(frozen=True)
class SurfaceReport:
    faces: int
    vertices: int
    volume_mm3: float
    area_mm2: float
    bbox_min_lps: tuple[float, float, float]
    bbox_max_lps: tuple[float, float, float]
    watertight: bool
    components: int
    notes: tuple[str, ...] = ()


def is_watertight(mesh: Mesh) -> bool:
    """Every edge has exactly two faces, traversed in opposite directions (closed, edge-manifold,
    consistently wound), and no face repeats a vertex."""
    faces = mesh.faces.astype(np.int64)
    if len(faces) == 0:
        return False
    a, b = faces.ravel(), faces[:, [1, 2, 0]].ravel()
    if np.any(a == b):
        return False
    n = len(mesh.vertices_lps)
    forward = np.sort(a * n + b)
    if np.any(forward[1:] == forward[:-1]):
        return False
    return bool(np.array_equal(forward, np.sort(b * n + a)))


def require_watertight(mesh: Mesh) -> None:
    if not is_watertight(mesh):
        faces = mesh.faces.astype(np.int64)
        edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
        _, uses = np.unique(edges, axis=0, return_counts=True)
        raise MeshNotWatertight(
            f"surface is not watertight: {int((uses == 1).sum())} open and {int((uses > 2).sum())} "
            f"non-manifold edges of {len(uses)}"
        )


def vertex_components(mesh: Mesh) -> tuple[int, np.ndarray]:
    """Number of edge-connected components and each vertex's component."""
    f, n = mesh.faces, len(mesh.vertices_lps)
    rows = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    cols = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    graph = sparse.csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    return int(count), labels


def submesh(mesh: Mesh, face_ids: np.ndarray) -> Mesh:
    """The faces `face_ids` with only the vertices they use."""
    used, local = np.unique(mesh.faces[face_ids], return_inverse=True)
    return Mesh(mesh.vertices_lps[used], local.reshape(-1, 3).astype(np.int32))


def concatenate(meshes: Sequence[Mesh]) -> Mesh:
    offsets = np.cumsum([0] + [len(m.vertices_lps) for m in meshes])
    return Mesh(
        np.concatenate([m.vertices_lps for m in meshes]) if meshes else np.empty((0, 3)),
        np.concatenate([m.faces + o for m, o in zip(meshes, offsets, strict=False)]).astype(np.int32)
        if meshes
        else np.empty((0, 3), dtype=np.int32),
    )


def measure(mesh: Mesh, notes: Sequence[str] = ()) -> SurfaceReport:
    v, f = mesh.vertices_lps, mesh.faces
    components, _ = vertex_components(mesh)
    used = np.unique(f)
    lo, hi = v[used].min(axis=0), v[used].max(axis=0)
    volume, area = volume_and_area(v, f)
    return SurfaceReport(
        faces=len(f),
        vertices=len(v),
        volume_mm3=volume,
        area_mm2=area,
        bbox_min_lps=(float(lo[0]), float(lo[1]), float(lo[2])),
        bbox_max_lps=(float(hi[0]), float(hi[1]), float(hi[2])),
        watertight=is_watertight(mesh),
        components=components,
        notes=tuple(notes),
    )


def volume_and_area(vertices: np.ndarray, faces: np.ndarray, chunk: int = 262_144) -> tuple[float, float]:
    """Signed volume by the divergence theorem about the centroid (positive for outward normals),
    and the area; in chunks of faces, so a million-face mesh needs no gigabyte of corner copies."""
    centre = vertices.mean(axis=0) if len(vertices) else np.zeros(3)
    volume = area = 0.0
    for start in range(0, len(faces), chunk):
        corners = vertices[faces[start : start + chunk]] - centre  # (n, 3 corners, 3)
        cross = np.cross(corners[:, 1], corners[:, 2])
        volume += float(np.einsum("ij,ij->", corners[:, 0], cross)) / 6.0
        normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        area += 0.5 * float(np.linalg.norm(normals, axis=1).sum())
    return volume, area
