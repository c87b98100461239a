"""Closed triangle surfaces in patient LPS millimetres from masks: marching cubes, windowed-sinc
smoothing (no shrinkage), quadric decimation, outward normals, a watertightness check.

The mask is padded by one background voxel, so a bone cut by the scan's edge is capped there and
the surface is closed. Vertices go through the full image geometry,
`lps = origin + direction · diag(spacing) · (i, j, k)`, so sagittal and oblique volumes come out in
the right place. Faces are counter-clockwise seen from outside (outward normals).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import fast_simplification
import numpy as np
import SimpleITK as sitk
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from skimage.measure import marching_cubes

from server.imaging.segment import Mask, Progress, SeedPointError, bounding_box_zyx, keep_component

SLAB_SLICES = 32  # marching cubes runs on slabs: a float32 copy of 32 slices, not of the whole crop
CHUNK_FACES = 400_000  # fast_simplification holds ~300 bytes per face: decimate big meshes in pieces


class SurfaceError(ValueError):
    """No surface can be made from this mask; the message says why."""


class MeshNotWatertight(SurfaceError):
    """The mesh has open or non-manifold edges, or inconsistent winding."""


@dataclass(frozen=True)
class Mesh:
    vertices_lps: np.ndarray  # (V, 3) float64, patient LPS mm
    faces: np.ndarray  # (F, 3) int32, counter-clockwise seen from outside


@dataclass(frozen=True)
class SurfaceParams:
    """Slicer's defaults: windowed sinc, 20 iterations, pass band 0.01 (its smoothing factor 0.5).
    `target_faces` None keeps every face. `keep`: all mask components, the largest, or the one
    containing `seed_lps` (chosen on the voxels, so a bone's inner cavity surfaces stay with it)."""

    smoothing_iterations: int = 20
    smoothing_pass_band: float = 0.01
    target_faces: int | None = 300_000
    keep: Literal["all", "largest", "seed"] = "all"
    seed_lps: tuple[float, float, float] | None = None


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


@dataclass(frozen=True)
class Surface:
    mesh: Mesh
    report: SurfaceReport


def extract_surface(
    mask: Mask | sitk.Image, params: SurfaceParams | None = None, progress: Progress | None = None
) -> Surface:
    """Mask → smoothed, decimated, watertight surface in LPS mm; raises MeshNotWatertight otherwise."""
    params = params or SurfaceParams()
    report = progress or (lambda stage, fraction: None)
    image = mask.image if isinstance(mask, Mask) else mask
    report("marching cubes", 0.0)
    mesh = mask_to_mesh(image, keep=params.keep, seed_lps=params.seed_lps)
    if params.smoothing_iterations > 0:
        report("smoothing", 0.3)
        mesh = smooth(mesh, params.smoothing_iterations, params.smoothing_pass_band)
    if params.target_faces is not None and len(mesh.faces) > params.target_faces:
        report("decimation", 0.5)
        mesh = decimate(mesh, params.target_faces)
    report("checking", 0.95)
    require_watertight(mesh)
    measured = measure(mesh)
    report("done", 1.0)
    return Surface(mesh, measured)


def mask_to_mesh(
    mask: sitk.Image,
    keep: Literal["all", "largest", "seed"] = "all",
    seed_lps: tuple[float, float, float] | None = None,
) -> Mesh:
    """Marching cubes at 0.5 on the 0/1 mask's bounding box, in LPS mm, outward-oriented."""
    if mask.GetDimension() != 3:
        raise SurfaceError(f"need a 3D mask, got {mask.GetDimension()}D")
    view = sitk.GetArrayViewFromImage(mask)
    box = bounding_box_zyx(view)
    if box is None:
        raise SurfaceError("the mask is empty: nothing to make a surface of")
    crop = np.ascontiguousarray(view[box] != 0).view(np.uint8)
    if keep != "all":
        seed = None
        if keep == "seed":
            if seed_lps is None:
                raise SurfaceError("keep='seed' needs seed_lps")
            index = [round(c) for c in mask.TransformPhysicalPointToContinuousIndex([float(v) for v in seed_lps])]
            seed = (index[2] - box[0].start, index[1] - box[1].start, index[0] - box[2].start)
            if not all(0 <= s < n for s, n in zip(seed, crop.shape, strict=True)) or not crop[seed]:
                raise SeedPointError(f"seed {tuple(seed_lps)} LPS mm is not in the mask")
        crop, _ = keep_component(crop, keep, seed)
    verts_zyx, faces = _marching_cubes_in_slabs(crop)
    del crop
    # padded-crop z,y,x → volume x,y,z index (the pad is one voxel) → LPS mm
    offset_xyz = np.array([box[2].start, box[1].start, box[0].start], dtype=np.float64) - 1.0
    ijk = verts_zyx[:, ::-1].astype(np.float64) + offset_xyz
    del verts_zyx
    to_lps = np.array(mask.GetDirection(), dtype=np.float64).reshape(3, 3) * np.array(mask.GetSpacing())
    vertices = ijk @ to_lps.T + np.array(mask.GetOrigin(), dtype=np.float64)
    if _signed_volume(vertices, faces) < 0:  # the index → LPS map may be a reflection
        faces = faces[:, ::-1].copy()
    return Mesh(vertices, faces)


def _marching_cubes_in_slabs(crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of a 0/1 z,y,x array padded by one zero voxel on every side, slab by slab.
    Vertices sit at edge midpoints, so the vertices a slab shares with the previous one (on their
    common plane) have identical, whole or half-voxel coordinates: they are matched exactly."""
    nz, ny, nx = crop.shape
    depth = nz + 2  # padded slices: padded slice p holds crop slice p - 1
    row_keys = 2 * (nx + 2) + 1
    verts_out: list[np.ndarray] = []
    faces_out: list[np.ndarray] = []
    count = 0
    shared_keys = shared_ids = np.empty(0, dtype=np.int64)  # the previous slab's last plane, sorted
    for z0 in range(0, depth - 1, SLAB_SLICES):
        z1 = min(z0 + SLAB_SLICES, depth - 1)  # the slab covers padded slices z0..z1
        slab = np.zeros((z1 - z0 + 1, ny + 2, nx + 2), dtype=np.float32)
        lo, hi = max(z0, 1), min(z1, nz)
        if lo <= hi:
            slab[lo - z0 : hi - z0 + 1, 1:-1, 1:-1] = crop[lo - 1 : hi]
        if not slab.any():
            shared_keys = shared_ids = np.empty(0, dtype=np.int64)
            continue
        verts, faces, _, _ = marching_cubes(slab, 0.5, allow_degenerate=True)
        del slab
        keys = np.rint(verts[:, 1] * 2).astype(np.int64) * row_keys + np.rint(verts[:, 2] * 2).astype(np.int64)
        ids = np.empty(len(verts), dtype=np.int64)
        first = verts[:, 0] == 0
        if first.any():
            at = np.minimum(np.searchsorted(shared_keys, keys[first]), max(len(shared_keys) - 1, 0))
            if len(shared_keys) == 0 or not np.array_equal(shared_keys[at], keys[first]):
                raise SurfaceError("marching cubes slabs do not meet: internal error")
            ids[first] = shared_ids[at]
        new = ~first
        ids[new] = count + np.arange(int(new.sum()))
        count += int(new.sum())
        verts[:, 0] += z0
        verts_out.append(verts[new])
        faces_out.append(ids[faces].astype(np.int32))
        last = np.flatnonzero(verts[:, 0] == z1)
        order = np.argsort(keys[last])
        shared_keys, shared_ids = keys[last][order], ids[last][order]
    return np.concatenate(verts_out), np.concatenate(faces_out)


def smooth(mesh: Mesh, iterations: int = 20, pass_band: float = 0.01) -> Mesh:
    """Windowed-sinc low-pass filter of the vertex positions (Taubin 1996, as VTK's
    vtkWindowedSincPolyDataFilter): a Chebyshev polynomial of the umbrella operator with unit gain
    at frequency 0, so the mesh neither shrinks nor drifts. Topology is unchanged."""
    if iterations < 1:
        return mesh
    if not 0.0 < pass_band < 2.0:
        raise SurfaceError(f"pass band must be in (0, 2), got {pass_band}")
    sigma = _sinc_coefficients(iterations, pass_band)
    n = len(mesh.vertices_lps)
    # On a closed, consistently wound mesh each edge is a half-edge once in each direction, so the
    # faces' half-edges alone give every vertex all its neighbours.
    sources, targets = mesh.faces.ravel(), mesh.faces[:, [1, 2, 0]].ravel()
    degree = np.bincount(sources, minlength=n).astype(np.float64)
    degree[degree == 0] = 1.0
    umbrella = sparse.csr_matrix((1.0 / degree[sources], (sources, targets)), shape=(n, n))  # rows average
    del sources, targets, degree
    center = mesh.vertices_lps.mean(axis=0)
    x0 = mesh.vertices_lps - center
    x1 = 0.5 * (x0 + umbrella @ x0)
    out = sigma[0] * x0 + sigma[1] * x1
    for s in sigma[2:]:
        x2 = x1 + umbrella @ x1 - x0  # T_{n+1} = 2·((I + W)/2)·T_n − T_{n−1}
        out += s * x2
        x0, x1 = x1, x2
    out += center
    return Mesh(out, mesh.faces)


def _sinc_coefficients(iterations: int, pass_band: float) -> np.ndarray:
    """Hamming-windowed Chebyshev series of an ideal low-pass; as VTK, the cut-off is shifted by
    Newton's method until the filter passes the pass-band frequency with gain 1 (20 terms cannot
    resolve a sharp cut-off at a small pass band: unshifted, a sphere shrinks by a fifth)."""
    theta = float(np.arccos(1.0 - 0.5 * pass_band))
    i = np.arange(iterations + 1, dtype=np.float64)
    hamming = 0.54 + 0.46 * np.cos(i * np.pi / (iterations + 1))
    at_pass_band = hamming * np.cos(i * theta)

    def coefficients(cutoff: float) -> np.ndarray:
        c = np.empty_like(i)
        c[0] = cutoff / np.pi
        c[1:] = 2.0 * np.sin(i[1:] * cutoff) / (i[1:] * np.pi)
        return c

    shift = 0.0
    for _ in range(100):
        gain = float(coefficients(theta + shift) @ at_pass_band)
        if abs(gain - 1.0) < 1e-6:
            break
        slope = np.empty_like(i)
        slope[0] = 1.0 / np.pi
        slope[1:] = 2.0 * np.cos(i[1:] * (theta + shift)) / np.pi
        shift -= (gain - 1.0) / float(slope @ at_pass_band)
    sigma = coefficients(theta + shift) * hamming
    return sigma / sigma.sum()  # gain exactly 1 at frequency 0: no drift, no growth


def decimate(mesh: Mesh, target_faces: int, chunk_faces: int = CHUNK_FACES) -> Mesh:
    """Quadric edge-collapse decimation to about `target_faces` (fast_simplification). Meshes over
    `chunk_faces` are first decimated in slabs with their cut borders locked, then as a whole, which
    bounds the decimator's memory. fast_simplification keeps module state: one call at a time per
    process."""
    if target_faces < 4:
        raise SurfaceError(f"target_faces must be at least 4, got {target_faces}")
    vertices, faces = mesh.vertices_lps, mesh.faces
    if len(faces) <= target_faces:
        return mesh
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


def measure(mesh: Mesh) -> SurfaceReport:
    v, f = mesh.vertices_lps, mesh.faces
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    cross = np.cross(b - a, c - a)
    n = len(v)
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    graph = sparse.coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    components, _ = connected_components(graph, directed=False)
    used = np.unique(f)
    lo, hi = v[used].min(axis=0), v[used].max(axis=0)
    return SurfaceReport(
        faces=len(f),
        vertices=n,
        volume_mm3=_signed_volume(v, f),
        area_mm2=float(0.5 * np.linalg.norm(cross, axis=1).sum()),
        bbox_min_lps=(float(lo[0]), float(lo[1]), float(lo[2])),
        bbox_max_lps=(float(hi[0]), float(hi[1]), float(hi[2])),
        watertight=is_watertight(mesh),
        components=int(components),
    )


def _signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Divergence theorem, about the centroid for precision: positive for outward normals."""
    v = vertices - vertices.mean(axis=0)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)
