"""Quadric edge-collapse decimation (fast_simplification) that keeps surfaces watertight.

fast_simplification does not check the link condition: on thin parts, tunnels (spongy bone) and
tiny components an edge collapse can glue two sheets together (non-manifold edges, coincident
faces). So each connected component is decimated on its own and checked. A broken result loses its
folded (coincident, opposite) face pairs; if still broken, the component is decimated again in small
patches with their borders locked, each patch checked on its own and kept undecimated if its result
is broken, so the stitched component is closed whatever happens (a note in the report says so).
Components under DUST_FACES faces (noise specks) are kept as they are. Meshes over CHUNK_FACES are
first decimated in slabs with locked borders, then as a whole, which bounds the decimator's memory
(~300 bytes per face). fast_simplification keeps module state: one call at a time per process.
"""

from __future__ import annotations

import fast_simplification
import numpy as np

from server.imaging.mesh import Mesh, SurfaceError, concatenate, is_watertight, submesh, vertex_components

CHUNK_FACES = 400_000
PATCH_FACES = 3_000
DUST_FACES = 100
_KEY = np.int64(2**31)  # directed half-edge key: start * _KEY + end


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
        return _decimate_component(mesh, ratio, chunk_faces, notes)
    face_labels = labels[mesh.faces[:, 0]]
    order = np.argsort(face_labels, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(face_labels[order])) + 1)
    del labels, face_labels, order
    pieces = [
        _decimate_component(submesh(mesh, ids), ratio, chunk_faces, notes) for ids in groups if len(ids) >= DUST_FACES
    ]
    dust = [ids for ids in groups if len(ids) < DUST_FACES]
    if dust:
        pieces.append(submesh(mesh, np.concatenate(dust)))
    return concatenate(pieces)


def _decimate_component(part: Mesh, ratio: float, chunk_faces: int, notes: list[str]) -> Mesh:
    target = max(4, round(len(part.faces) * ratio))
    result = _quadric(part, target, chunk_faces)
    if not is_watertight(result):
        result = _without_folded_pairs(result)
    if len(result.faces) and is_watertight(result):
        return result
    patched = _decimate_pieces(part.vertices_lps, part.faces, ratio, _patches(part), check=True)
    if patched is not None and is_watertight(Mesh(*patched)):
        notes.append(
            f"a component of {len(part.faces)} faces was decimated patch by patch to {len(patched[1])} "
            "faces: decimating it whole broke its topology"
        )
        return Mesh(*patched)
    notes.append(f"a component of {len(part.faces)} faces was kept undecimated: decimation broke its topology")
    return part


def _quadric(mesh: Mesh, target_faces: int, chunk_faces: int) -> Mesh:
    vertices, faces = mesh.vertices_lps, mesh.faces
    while len(faces) > chunk_faces and len(faces) > 2 * target_faces:
        chunked = _decimate_pieces(vertices, faces, target_faces / len(faces), _slabs(vertices, faces, chunk_faces))
        if chunked is None or len(chunked[1]) >= 0.9 * len(faces):
            break
        vertices, faces = chunked
    if len(faces) <= target_faces:
        return Mesh(vertices, faces)
    points, triangles = fast_simplification.simplify(vertices, faces.astype(np.int32), target_count=target_faces)
    return Mesh(np.asarray(points, dtype=np.float64), np.asarray(triangles, dtype=np.int32))


def _without_folded_pairs(mesh: Mesh) -> Mesh:
    """Drop pairs of faces on the same three vertices with opposite winding (a sheet folded onto
    itself: zero volume), and degenerate faces; then the vertices no face uses."""
    faces = mesh.faces
    ordered = np.sort(faces, axis=1)
    _, inverse, uses = np.unique(ordered, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    even = np.zeros(len(faces), dtype=bool)  # the face is a rotation of its sorted vertices
    for shift in range(3):
        even |= (faces == np.roll(ordered, shift, axis=1)).all(axis=1)
    balance = np.bincount(inverse, weights=np.where(even, 1, -1), minlength=len(uses))
    folded = (uses == 2) & (balance == 0)
    keep = ~folded[inverse] & (ordered[:, 0] != ordered[:, 1]) & (ordered[:, 1] != ordered[:, 2])
    if not keep.any():
        return Mesh(mesh.vertices_lps[:0], faces[:0])
    return submesh(mesh, np.flatnonzero(keep))


def _slabs(vertices: np.ndarray, faces: np.ndarray, chunk_faces: int) -> list[np.ndarray]:
    """Face ids in slabs of about `chunk_faces` along the longest axis."""
    axis = int(np.argmax(vertices.max(axis=0) - vertices.min(axis=0)))
    order = np.argsort(vertices[faces, axis].mean(axis=1), kind="stable")
    return np.array_split(order, -(-len(faces) // chunk_faces))


def _patches(mesh: Mesh) -> list[np.ndarray]:
    """Face ids in cubic cells holding about PATCH_FACES faces of the surface each."""
    v, f = mesh.vertices_lps, mesh.faces
    centroids = v[f].mean(axis=1)
    area_per_face = max(
        float(np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1).mean() / 2), 1e-9
    )
    cell = 0.5 * np.sqrt(PATCH_FACES * area_per_face)  # bone surfaces fold: about PATCH_FACES per cell
    cells = np.floor((centroids - centroids.min(axis=0)) / cell).astype(np.int64)
    ids = (cells[:, 0] * (cells[:, 1].max() + 1) + cells[:, 1]) * (cells[:, 2].max() + 1) + cells[:, 2]
    order = np.argsort(ids, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(ids[order])) + 1)


def _decimate_pieces(
    vertices: np.ndarray, faces: np.ndarray, ratio: float, pieces: list[np.ndarray], check: bool = False
) -> tuple[np.ndarray, np.ndarray] | None:
    """Decimate each piece (face ids) with its borders locked and stitch them again by the border
    vertices' unchanged coordinates. With `check`, a piece whose result is not a manifold patch with
    the same border is kept as it was. None if stitching would be ambiguous."""
    owner = np.full(len(vertices), -1, dtype=np.int64)
    shared = np.zeros(len(vertices), dtype=bool)
    for c, face_ids in enumerate(pieces):
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
    for face_ids in pieces:
        used, local = np.unique(faces[face_ids], return_inverse=True)
        local = local.reshape(-1, 3)
        target = max(4, int(len(face_ids) * ratio))
        points = triangles = None
        if target < len(face_ids):
            points, triangles = fast_simplification.simplify(
                vertices[used], local.astype(np.int32), target_count=target, preserve_border=True
            )
            points = np.ascontiguousarray(points, dtype=np.float64)
            point_keys = points.view("V24").ravel()
            at = np.minimum(np.searchsorted(sorted_keys, point_keys), max(len(sorted_keys) - 1, 0))
            on_border = sorted_keys[at] == point_keys if len(sorted_keys) else np.zeros(len(points), dtype=bool)
            index = np.empty(len(points), dtype=np.int64)
            index[on_border] = key_order[at[on_border]]
            index[~on_border] = count + np.arange(int((~on_border).sum()))
            candidate = index[np.asarray(triangles, dtype=np.int64)]
        if check or points is None:
            is_shared = shared[used]
            original_index = np.empty(len(used), dtype=np.int64)
            original_index[is_shared] = np.searchsorted(shared_ids, used[is_shared])
            original_index[~is_shared] = count + np.arange(int((~is_shared).sum()))
            original = original_index[local]
            if points is None or not _same_patch_border(candidate, original):
                out_vertices.append(vertices[used[~is_shared]])
                out_faces.append(original)
                count += int((~is_shared).sum())
                continue
        out_vertices.append(points[~on_border])
        out_faces.append(candidate)
        count += int((~on_border).sum())
    return np.concatenate(out_vertices), np.concatenate(out_faces).astype(np.int32)


def _same_patch_border(candidate: np.ndarray, original: np.ndarray) -> bool:
    """The decimated patch has no degenerate face, uses each directed edge once, and its open
    edges (those without their reverse) are exactly the original patch's."""
    if len(candidate) == 0 or np.any(candidate[:, [0, 1, 2]] == candidate[:, [1, 2, 0]]):
        return False

    def open_edges(f: np.ndarray) -> tuple[np.ndarray, bool]:
        start, end = f.ravel(), f[:, [1, 2, 0]].ravel()
        forward = start * _KEY + end
        unique = np.unique(forward)
        return np.sort(forward[~np.isin(forward, end * _KEY + start)]), len(unique) == len(forward)

    candidate_open, once = open_edges(candidate)
    return once and np.array_equal(candidate_open, open_edges(original)[0])
