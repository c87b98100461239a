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


def separate_touching_sheets(mesh: Mesh) -> Mesh | None:
    """Make a closed mesh edge- and vertex-manifold where sheets touch along an edge or at a vertex
    (a tunnel pinched by decimation): each directed half-edge is paired with a reverse one (around an
    edge of four or more faces, with its neighbour on the solid side), and every vertex is split into
    one copy per fan of corners the pairing connects. The triangles are unchanged, so are volume and
    shape; touching sheets get their own, coincident vertices. None if some edge is used more often
    in one direction than in the other (a hole, a flip)."""
    faces = mesh.faces.astype(np.int64)
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 2] != faces[:, 0])]
    n, corners = len(mesh.vertices_lps), 3 * len(faces)
    start, end = faces.ravel(), faces[:, [1, 2, 0]].ravel()  # half-edge h runs from corner h
    keys = start * n + end
    forward, backward = np.argsort(keys, kind="stable"), np.argsort(end * n + start, kind="stable")
    sorted_keys = keys[forward]
    if not np.array_equal(sorted_keys, (end * n + start)[backward]):
        return None
    twin = np.empty(corners, dtype=np.int64)
    twin[forward] = backward  # the k-th a→b with the k-th b→a; fixed below where k > 1
    after = np.arange(corners) + np.tile([1, 1, -2], len(faces))  # the corner a half-edge ends at
    opposite = np.arange(corners) + np.tile([2, -1, -1], len(faces))  # the face's third corner
    repeated = np.flatnonzero((sorted_keys[1:] == sorted_keys[:-1]) & (start[forward[1:]] < end[forward[1:]]))
    for key in np.unique(sorted_keys[repeated + 1]):
        a, b = divmod(int(key), n)
        outs = forward[np.searchsorted(sorted_keys, key) : np.searchsorted(sorted_keys, key, side="right")]
        back = b * n + a
        ins = forward[np.searchsorted(sorted_keys, back) : np.searchsorted(sorted_keys, back, side="right")]
        _pair_around_edge(mesh.vertices_lps, a, b, outs, ins, start[opposite], twin)
    rows = np.concatenate([np.arange(corners), after])  # corners at a joined; corners at b joined
    cols = np.concatenate([after[twin], twin])
    graph = sparse.csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(corners, corners))
    _, fan = connected_components(graph, directed=False)
    first_corner = np.zeros(fan.max() + 1, dtype=np.int64)
    first_corner[fan[::-1]] = np.arange(corners)[::-1]  # the lowest corner of each fan
    return Mesh(mesh.vertices_lps[start[first_corner]], fan.reshape(-1, 3).astype(np.int32))


def _pair_around_edge(
    vertices: np.ndarray, a: int, b: int, outs: np.ndarray, ins: np.ndarray, third: np.ndarray, twin: np.ndarray
) -> None:
    """Faces around edge a-b sorted by angle; an a→b face's outward normal turns towards increasing
    angle, so the solid lies clockwise of it: its twin is its clockwise neighbour (a b→a face)."""
    axis = vertices[b] - vertices[a]
    axis /= np.linalg.norm(axis) or 1.0
    half_edges = np.concatenate([outs, ins])
    wings = vertices[third[half_edges]] - vertices[a]
    wings -= np.outer(wings @ axis, axis)
    u = wings[0] / (np.linalg.norm(wings[0]) or 1.0)
    angle = np.arctan2(wings @ np.cross(axis, u), wings @ u)
    ring = half_edges[np.argsort(angle, kind="stable")]
    is_out = np.isin(ring, outs)
    if not np.all(is_out != np.roll(is_out, 1)):
        return  # the faces do not alternate: keep the default pairing
    for i in np.flatnonzero(is_out):
        h, g = ring[i], ring[i - 1]
        twin[h], twin[g] = g, h


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
