"""Repair: merge vertices, drop degenerate and duplicate faces, make the winding consistent and the
normals outward, fill holes, keep the chosen components. The report counts every change.

Order matters: merging makes edges shared (so holes and flips can be seen), winding is fixed before
holes are filled (a fill follows its boundary's direction), and normals are turned outward on the
closed result, where the signed volume means something.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import trimesh
from scipy import sparse
from scipy.sparse.csgraph import breadth_first_order

from server.design import topology
from server.design.analyze import face_areas, face_volumes
from server.design.errors import InvalidDesignParameters, MeshEmpty
from server.design.meshes import MeshResult, make_mesh

MAX_NESTING_CHECKS = 50  # components tested for lying inside another (cavities keep inward normals)


def repair_mesh(
    mesh: trimesh.Trimesh,
    *,
    merge_tolerance_mm: float = 1e-6,
    fill_holes: bool = True,
    max_hole_edges: int = 2000,
    keep: str | Sequence[int] = "all",
    min_component_volume_mm3: float = 0.0,
) -> MeshResult:
    """`keep`: "all", "largest", or component indices (components ranked by volume, largest first, as
    `analyze_mesh` lists them after repair). Components under `min_component_volume_mm3` are dropped."""
    vertices, faces = np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)
    report: dict[str, Any] = {
        "faces_before": len(faces),
        "vertices_before": len(vertices),
        "watertight_before": topology.is_watertight(faces),
    }
    vertices, faces, report["vertices_merged"] = merge_close_vertices(vertices, faces, merge_tolerance_mm)
    faces, report["degenerate_faces_removed"] = _drop_degenerate(faces)
    faces, report["duplicate_faces_removed"] = _drop_duplicates(faces)
    if len(faces) == 0:
        raise MeshEmpty("no faces left after removing degenerate and duplicate faces")
    report["zero_area_faces"] = int((face_areas(vertices, faces) <= 1e-12 * _scale(vertices) ** 2).sum())
    faces, report["faces_flipped"] = _fix_winding(faces)
    report["holes_filled"] = report["hole_faces_added"] = report["holes_left_open"] = 0
    if fill_holes:
        vertices, faces, filled, added, left = _fill_holes(vertices, faces, max_hole_edges)
        report.update(holes_filled=filled, hole_faces_added=added, holes_left_open=left)
    faces, ranked, report["components_inverted"] = _orient_outward(vertices, faces)
    faces, report["components_removed"] = _keep_components(vertices, faces, ranked, keep, min_component_volume_mm3)
    vertices, faces = compact(vertices, faces)
    edges = topology.edge_topology(faces)
    report.update(
        faces_after=len(faces),
        vertices_after=len(vertices),
        watertight_after=topology.is_watertight(faces),
        nonmanifold_edges=edges.nonmanifold_edges,
        winding_conflicts=topology.winding_conflicts(edges),
        volume_mm3=round(float(face_volumes(vertices, faces).sum()), 6),
    )
    return MeshResult(meshes={"repaired": make_mesh(vertices, faces)}, report=report)


def _scale(vertices: np.ndarray) -> float:
    return max(float(np.ptp(vertices, axis=0).max()) if len(vertices) else 1.0, 1.0)


def merge_close_vertices(
    vertices: np.ndarray, faces: np.ndarray, tolerance_mm: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Vertices on the same `tolerance_mm` grid cell become one (the first one keeps its position)."""
    if tolerance_mm <= 0:
        raise InvalidDesignParameters("merge_tolerance_mm must be > 0", field="merge_tolerance_mm")
    keys = np.floor(vertices / tolerance_mm + 0.5).astype(np.int64)
    _unique, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    # renumber in first-seen order so the output does not depend on the sort
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    merged = vertices[np.sort(first)]
    return merged, rank[inverse.ravel()][faces], len(vertices) - len(merged)


def _drop_degenerate(faces: np.ndarray) -> tuple[np.ndarray, int]:
    bad = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 2] == faces[:, 0])
    return faces[~bad], int(bad.sum())


def _drop_duplicates(faces: np.ndarray) -> tuple[np.ndarray, int]:
    """Faces on the same three vertices, whatever their winding; the first one stays."""
    _unique, first = np.unique(np.sort(faces, axis=1), axis=0, return_index=True)
    keep = np.sort(first)
    return faces[keep], len(faces) - len(keep)


def _fix_winding(faces: np.ndarray) -> tuple[np.ndarray, int]:
    """Flip faces so neighbours run along shared edges in opposite directions.

    A breadth-first tree of face neighbours gives each face its parity relative to the tree's root
    (accumulated by pointer jumping, not face by face); in each component the smaller side is flipped.
    """
    edges = topology.edge_topology(faces)
    pairs, shared = topology.face_adjacency(edges)
    n = len(faces)
    if len(pairs) == 0:
        return faces, 0
    # where a pair runs along its shared edge in the same direction, one of its faces is flipped
    direction = {}
    for column in (0, 1):
        slot = np.argmax(edges.face_edges[pairs[:, column]] == shared[:, None], axis=1)
        direction[column] = edges.same_direction[pairs[:, column], slot]
    disagree = (direction[0] == direction[1]).astype(np.int8)
    graph = sparse.coo_matrix((disagree + 1, (pairs[:, 0], pairs[:, 1])), shape=(n, n)).tocsr()
    graph = graph + graph.T
    count, labels = topology.face_components(n, pairs)
    parent = np.arange(n)
    for root in np.unique(labels, return_index=True)[1]:
        _order, predecessors = breadth_first_order(graph, int(root), directed=False, return_predecessors=True)
        reached = predecessors >= 0
        parent[reached] = predecessors[reached]
    # parity to the parent (the stored value is 1 + disagree), then to the root by pointer jumping
    flip = np.asarray(graph[np.arange(n), parent]).ravel().astype(np.int8) - 1
    flip[parent == np.arange(n)] = 0
    ancestor = parent
    while np.any(ancestor != ancestor[ancestor]):
        flip, ancestor = flip ^ flip[ancestor], ancestor[ancestor]
    flip = flip.astype(bool)
    flipped_per_component = np.bincount(labels, weights=flip, minlength=count)
    size = np.bincount(labels, minlength=count)
    flip ^= (flipped_per_component * 2 > size)[labels]
    faces = faces.copy()
    faces[flip] = faces[flip][:, ::-1]
    return faces, int(flip.sum())


def _fill_holes(
    vertices: np.ndarray, faces: np.ndarray, max_edges: int
) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    """Close each boundary loop: a triangle for three edges, else a fan around the loop's centroid."""
    new_vertices, new_faces, filled, left = [], [], 0, 0
    next_vertex = len(vertices)
    for loop in topology.boundary_loops(faces):
        if len(loop) > max_edges:
            left += 1
            continue
        filled += 1
        if len(loop) == 3:
            new_faces.append(loop[None, :])
            continue
        new_vertices.append(vertices[loop].mean(axis=0))
        ring = np.stack([loop, np.roll(loop, -1), np.full(len(loop), next_vertex)], axis=1)
        new_faces.append(ring)
        next_vertex += 1
    if not new_faces:
        return vertices, faces, 0, 0, left
    added = np.concatenate(new_faces)
    if new_vertices:
        vertices = np.concatenate([vertices, np.asarray(new_vertices)])
    return vertices, np.concatenate([faces, added]), filled, len(added), left


def _orient_outward(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Turn each component so its volume is positive, or negative for a cavity inside another one.

    Returns the faces, each face's component rank (largest |volume| first) and the number turned.
    """
    count, labels = topology.face_components(len(faces), topology.face_adjacency(topology.edge_topology(faces))[0])
    volumes = np.bincount(labels, weights=face_volumes(vertices, faces), minlength=count)
    order = np.lexsort((np.arange(count), -np.abs(volumes)))
    rank = np.empty(count, dtype=np.int64)
    rank[order] = np.arange(count)
    want_negative = _cavities(vertices, faces, labels, order[:MAX_NESTING_CHECKS])
    turn = np.zeros(count, dtype=bool)
    turn[volumes < 0] = True
    turn[list(want_negative)] = volumes[list(want_negative)] > 0
    faces = faces.copy()
    flip = turn[labels]
    faces[flip] = faces[flip][:, ::-1]
    return faces, rank[labels], int(turn.sum())


def _cavities(vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray, candidates: np.ndarray) -> set[int]:
    """Components nested inside an odd number of bigger closed components."""
    if len(candidates) < 2:
        return set()
    shells = {}
    for component in candidates.tolist():
        part = faces[labels == component]
        if topology.is_watertight(part):
            shells[component] = trimesh.Trimesh(vertices, part, process=False)
    inside: set[int] = set()
    for i, component in enumerate(candidates.tolist()):
        probe = vertices[faces[labels == component][0, 0]][None, :]
        depth = sum(bool(shells[c].contains(probe)[0]) for c in candidates[:i].tolist() if c in shells)
        if depth % 2:
            inside.add(component)
    return inside


def _keep_components(
    vertices: np.ndarray, faces: np.ndarray, rank: np.ndarray, keep: str | Sequence[int], min_volume_mm3: float
) -> tuple[np.ndarray, int]:
    count = int(rank.max()) + 1
    volumes = np.bincount(rank, weights=face_volumes(vertices, faces), minlength=count)
    if keep == "all":
        wanted = np.ones(count, dtype=bool)
    elif keep == "largest":
        wanted = np.arange(count) == 0
    elif isinstance(keep, Sequence) and not isinstance(keep, str) and all(isinstance(i, int) for i in keep):
        if any(i < 0 or i >= count for i in keep):
            raise InvalidDesignParameters(f"keep: component indices must be in 0..{count - 1}", field="keep")
        wanted = np.isin(np.arange(count), list(keep))
    else:
        raise InvalidDesignParameters("keep: 'all', 'largest' or a list of component indices", field="keep")
    wanted &= np.abs(volumes) >= min_volume_mm3
    if not wanted.any():
        raise MeshEmpty("no component is left to keep")
    return faces[wanted[rank]], int(count - wanted.sum())


def compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop unreferenced vertices, keeping the others in order."""
    used = np.zeros(len(vertices), dtype=bool)
    used[faces.ravel()] = True
    index = np.cumsum(used) - 1
    return vertices[used], index[faces]
