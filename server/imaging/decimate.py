"""Quadric edge-collapse decimation (fast_simplification) that keeps surfaces watertight.

fast_simplification does not check the link condition: on thin parts, tunnels (spongy bone) and
tiny components an edge collapse can glue two sheets together (non-manifold edges, coincident
faces). So each connected component is decimated on its own and checked; a broken result loses its
coincident face pairs and has its touching sheets separated (mesh.separate_touching_sheets: same
triangles, own vertices); failing that it is retried with a gentler target, and as a last resort
kept undecimated (a note says so). Components under DUST_FACES faces (noise specks) are kept as they are. Meshes over
CHUNK_FACES are first decimated in slabs with their cut borders locked, then as a whole, which bounds
the decimator's memory (~300 bytes per face). fast_simplification keeps module state: one call at a
time per process.
"""

from __future__ import annotations

import fast_simplification
import numpy as np

from server.imaging.mesh import (
    Mesh,
    SurfaceError,
    concatenate,
    is_watertight,
    separate_touching_sheets,
    submesh,
    vertex_components,
)

CHUNK_FACES = 400_000
DUST_FACES = 100


def decimate(mesh: Mesh, target_faces: int, chunk_faces: int = CHUNK_FACES, notes: list[str] | None = None) -> Mesh:
    """About `target_faces` faces, each component reduced in proportion; watertight in, watertight out."""
    if target_faces < 4:
        raise SurfaceError(f"target_faces must be at least 4, got {target_faces}")
    if len(mesh.faces) <= target_faces:
        return mesh
    notes = notes if notes is not None else []
    ratio = target_faces / len(mesh.faces)
    count, labels = vertex_components(mesh)
    if count == 1:
        return _decimate_component(mesh, max(4, round(len(mesh.faces) * ratio)), chunk_faces, notes)
    face_labels = labels[mesh.faces[:, 0]]
    order = np.argsort(face_labels, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(face_labels[order])) + 1)
    del labels, face_labels, order
    pieces = []
    dust = [ids for ids in groups if len(ids) < DUST_FACES]
    for ids in groups:
        if len(ids) >= DUST_FACES:
            pieces.append(_decimate_component(submesh(mesh, ids), max(4, round(len(ids) * ratio)), chunk_faces, notes))
    if dust:
        pieces.append(submesh(mesh, np.concatenate(dust)))
    return concatenate(pieces)


def _decimate_component(part: Mesh, target: int, chunk_faces: int, notes: list[str]) -> Mesh:
    for attempt in (target, 2 * target, 4 * target):
        if attempt >= len(part.faces):
            break
        result = _quadric(part, attempt, chunk_faces)
        if not is_watertight(result):
            result = separate_touching_sheets(_without_coincident_faces(result)) or result
        if len(result.faces) and is_watertight(result):
            if attempt != target:
                notes.append(f"a component of {len(part.faces)} faces was decimated to {len(result.faces)}, not "
                             f"{target}: a stronger reduction broke its topology")
            return result
    notes.append(f"a component of {len(part.faces)} faces was kept undecimated: decimation broke its topology")
    return part


def _quadric(mesh: Mesh, target_faces: int, chunk_faces: int) -> Mesh:
    vertices, faces = mesh.vertices_lps, mesh.faces
    ratio = target_faces / len(faces)
    while len(faces) > chunk_faces and len(faces) > 2 * target_faces:
        chunked = _decimate_in_chunks(vertices, faces, ratio, chunk_faces)
        if chunked is None or len(chunked[1]) >= 0.9 * len(faces):
            break
        vertices, faces = chunked
        ratio = target_faces / len(faces)
    if len(faces) <= target_faces:
        return Mesh(vertices, faces)
    points, triangles = fast_simplification.simplify(vertices, faces.astype(np.int32), target_count=target_faces)
    return Mesh(np.asarray(points, dtype=np.float64), np.asarray(triangles, dtype=np.int32))


def _without_coincident_faces(mesh: Mesh) -> Mesh:
    """Drop pairs of faces on the same three vertices with opposite winding (a sheet folded onto
    itself: zero volume), and degenerate faces; then the vertices no face uses."""
    faces = mesh.faces
    ordered = np.sort(faces, axis=1)
    _, inverse, uses = np.unique(ordered, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    # a face's winding relative to its sorted vertices: even (+1) or odd (-1) rotation
    parity = np.where((faces == ordered).all(axis=1) | (faces == np.roll(ordered, 1, axis=1)).all(axis=1)
                      | (faces == np.roll(ordered, -1, axis=1)).all(axis=1), 1, -1)
    balance = np.bincount(inverse, weights=parity, minlength=len(uses))
    folded = (uses == 2) & (balance == 0)
    keep = ~folded[inverse] & (ordered[:, 0] != ordered[:, 1]) & (ordered[:, 1] != ordered[:, 2])
    if not keep.any():
        return Mesh(mesh.vertices_lps[:0], faces[:0])
    return submesh(mesh, np.flatnonzero(keep))


def _decimate_in_chunks(
    vertices: np.ndarray, faces: np.ndarray, ratio: float, chunk_faces: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Decimate face slabs along the longest axis, borders locked, and stitch them again by the
    border vertices' unchanged coordinates. None if stitching would be ambiguous."""
    parts = -(-len(faces) // chunk_faces)
    extent = vertices.max(axis=0) - vertices.min(axis=0)
    centroid = vertices[faces, int(np.argmax(extent))].mean(axis=1)
    order = np.argsort(centroid, kind="stable")
    chunks = np.array_split(order, parts)
    owner = np.full(len(vertices), -1, dtype=np.int64)
    shared = np.zeros(len(vertices), dtype=bool)
    for c, face_ids in enumerate(chunks):
        used = np.unique(faces[face_ids])
        shared[used[(owner[used] >= 0) & (owner[used] != c)]] = True
        owner[used] = c
    shared_ids = np.flatnonzero(shared)
    keys = np.ascontiguousarray(vertices[shared_ids]).view("V24").ravel()
    key_order = np.argsort(keys, kind="stable")
    sorted_keys = keys[key_order]
    if len(sorted_keys) > 1 and np.any(sorted_keys[1:] == sorted_keys[:-1]):
        return None
    out_vertices, out_faces, count = [vertices[shared_ids]], [], len(shared_ids)
    for face_ids in chunks:
        used, local = np.unique(faces[face_ids], return_inverse=True)
        target = max(4, int(len(face_ids) * ratio))
        points, triangles = fast_simplification.simplify(
            vertices[used], local.reshape(-1, 3).astype(np.int32), target_count=target, preserve_border=True
        )
        points = np.ascontiguousarray(points, dtype=np.float64)
        point_keys = points.view("V24").ravel()
        at = np.minimum(np.searchsorted(sorted_keys, point_keys), max(len(sorted_keys) - 1, 0))
        is_shared = sorted_keys[at] == point_keys if len(sorted_keys) else np.zeros(len(points), dtype=bool)
        new_index = np.empty(len(points), dtype=np.int64)
        new_index[is_shared] = key_order[at[is_shared]]
        new_index[~is_shared] = count + np.arange(int((~is_shared).sum()))
        count += int((~is_shared).sum())
        out_vertices.append(points[~is_shared])
        out_faces.append(new_index[np.asarray(triangles, dtype=np.int64)])
    return np.concatenate(out_vertices), np.concatenate(out_faces).astype(np.int32)
