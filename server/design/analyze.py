"""What a mesh is: closed or not, manifold or not, how big, in how many pieces, whether it cuts through
itself, and how thin its walls get (estimated by rays cast inwards from evenly spaced faces)."""

from __future__ import annotations

from typing import Any

import numpy as np
import trimesh

from server.design import topology

MAX_LISTED_COMPONENTS = 20


def face_volumes(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Each face's signed tetrahedron volume against the origin; they sum to the enclosed volume."""
    v0, v1, v2 = (vertices[faces[:, i]] for i in range(3))
    return np.einsum("ij,ij->i", v0, np.cross(v1, v2)) / 6.0


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    v0, v1, v2 = (vertices[faces[:, i]] for i in range(3))
    return 0.5 * np.linalg.norm(np.cross(v1 - v0, v2 - v0), axis=1)


def analyze_mesh(
    mesh: trimesh.Trimesh,
    *,
    thickness_samples: int = 256,
    max_intersection_pairs: int = 2_000_000,
) -> dict[str, Any]:
    vertices, faces = np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)
    edges = topology.edge_topology(faces)
    n_components, labels = topology.face_components(len(faces), topology.face_adjacency(edges)[0])
    volumes = np.bincount(labels, weights=face_volumes(vertices, faces), minlength=n_components)
    counts = np.bincount(labels, minlength=n_components)
    order = np.lexsort((np.arange(n_components), -np.abs(volumes)))  # biggest first, ties by first face
    watertight = topology.is_watertight(faces)
    referenced = np.zeros(len(vertices), dtype=bool)
    referenced[faces.ravel()] = True
    used = vertices[referenced]
    report: dict[str, Any] = {
        "faces": len(faces),
        "vertices": len(vertices),
        "watertight": watertight,
        "edge_manifold": edges.nonmanifold_edges == 0,
        "vertex_manifold": topology.nonmanifold_vertices(faces, edges) == 0,
        "boundary_edges": edges.boundary_edges,
        "nonmanifold_edges": edges.nonmanifold_edges,
        "nonmanifold_vertices": topology.nonmanifold_vertices(faces, edges),
        "winding_conflicts": topology.winding_conflicts(edges),
        "volume_mm3": round(float(volumes.sum()), 6),
        "area_mm2": round(float(face_areas(vertices, faces).sum()), 6),
        "bbox_min_lps": [round(float(v), 6) for v in used.min(axis=0)],
        "bbox_max_lps": [round(float(v), 6) for v in used.max(axis=0)],
        "components": n_components,
        "component_list": [
            {"index": rank, "faces": int(counts[i]), "volume_mm3": round(float(volumes[i]), 6)}
            for rank, i in enumerate(order[:MAX_LISTED_COMPONENTS].tolist())
        ],
        "self_intersections": self_intersections(vertices, faces, max_pairs=max_intersection_pairs),
    }
    report["wall_thickness"] = wall_thickness(mesh, samples=thickness_samples) if watertight else None
    return report


def self_intersections(vertices: np.ndarray, faces: np.ndarray, *, max_pairs: int = 2_000_000) -> dict[str, Any]:
    """Pairs of faces, not sharing a vertex, that cross each other.

    Broad phase: an R-tree of face bounding boxes. Narrow phase: does an edge of one face pierce the
    other (exact for transversal crossings; coplanar overlaps are not counted). Above `max_pairs`
    candidate pairs an even subset is tested and the count scaled (`estimated`).
    """
    corners = vertices[faces]
    low, high = corners.min(axis=1), corners.max(axis=1)
    pad = 1e-9 * max(float(np.ptp(vertices, axis=0).max()), 1.0)
    tree = trimesh.util.bounds_tree(np.concatenate([low - pad, high + pad], axis=1))
    hits, per_face = tree.intersection_v(low - pad, high + pad)
    a = np.repeat(np.arange(len(faces)), np.asarray(per_face, dtype=np.int64))
    b = np.asarray(hits, dtype=np.int64)
    keep = a < b
    a, b = a[keep], b[keep]
    shares = (faces[a][:, :, None] == faces[b][:, None, :]).any(axis=(1, 2))
    a, b = a[~shares], b[~shares]
    candidates = len(a)
    if candidates > max_pairs:
        pick = np.linspace(0, candidates - 1, max_pairs).round().astype(np.int64)
        a, b = a[pick], b[pick]
    crossing = np.zeros(len(a), dtype=bool)
    for start in range(0, len(a), 200_000):
        part = slice(start, start + 200_000)
        crossing[part] = _triangles_cross(corners[a[part]], corners[b[part]])
    count = int(crossing.sum())
    estimated = candidates > max_pairs
    if estimated and len(a):
        count = round(count * candidates / len(a))
    return {
        "pairs": count,
        "estimated": estimated,
        "candidate_pairs": candidates,
        "faces_involved": _faces_involved(a, b, crossing),
    }


def _faces_involved(a: np.ndarray, b: np.ndarray, crossing: np.ndarray) -> int:
    return len(np.unique(np.concatenate([a[crossing], b[crossing]])))


def _triangles_cross(t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    hit = np.zeros(len(t1), dtype=bool)
    for first, second in ((t1, t2), (t2, t1)):
        for i, j in ((0, 1), (1, 2), (2, 0)):
            hit |= _segment_pierces(first[:, i], first[:, j], second)
    return hit


def _segment_pierces(p0: np.ndarray, p1: np.ndarray, tri: np.ndarray, eps: float = 1e-9) -> np.ndarray:
    """Möller-Trumbore on segments; touching counts (faces that share no vertex should not touch)."""
    d = p1 - p0
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    h = np.cross(d, e2)
    det = np.einsum("ij,ij->i", e1, h)
    scale = np.linalg.norm(d, axis=1) * np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1)
    ok = np.abs(det) > 1e-12 * np.maximum(scale, 1e-300)  # parallel or degenerate: not a crossing
    inv = np.divide(1.0, det, out=np.zeros_like(det), where=ok)
    s = p0 - tri[:, 0]
    u = inv * np.einsum("ij,ij->i", s, h)
    q = np.cross(s, e1)
    v = inv * np.einsum("ij,ij->i", d, q)
    t = inv * np.einsum("ij,ij->i", e2, q)
    return ok & (u >= -eps) & (v >= -eps) & (u + v <= 1 + eps) & (t >= -eps) & (t <= 1 + eps)


def wall_thickness(mesh: trimesh.Trimesh, *, samples: int = 256) -> dict[str, Any] | None:
    """Distance from evenly spaced faces, inwards along their normal, to the next surface.

    An estimate: the minimum over `samples` faces, not over the whole surface (a thin spot between
    samples is missed); rays are cast from just inside each face centroid.
    """
    faces = np.asarray(mesh.faces)
    if len(faces) == 0:
        return None
    pick = np.unique(np.linspace(0, len(faces) - 1, min(samples, len(faces))).round().astype(np.int64))
    normals = np.asarray(mesh.face_normals)[pick]
    nudge = 1e-6 * max(float(np.ptp(np.asarray(mesh.vertices), axis=0).max()), 1.0)
    origins = np.asarray(mesh.triangles_center)[pick] - normals * nudge
    intersector = trimesh.ray.ray_triangle.RayMeshIntersector(mesh)
    locations, ray_index, _tri = intersector.intersects_location(origins, -normals, multiple_hits=False)
    if len(ray_index) == 0:
        return None
    distances = np.linalg.norm(locations - origins[ray_index], axis=1) + nudge
    thinnest = int(np.argmin(distances))
    return {
        "min_mm": round(float(distances[thinnest]), 6),
        "p05_mm": round(float(np.percentile(distances, 5)), 6),
        "median_mm": round(float(np.median(distances)), 6),
        "samples": len(pick),
        "hits": len(ray_index),
        "thinnest_at_lps": [round(float(v), 6) for v in origins[ray_index[thinnest]]],
        "estimated": True,
    }
