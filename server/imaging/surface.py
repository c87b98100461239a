"""Closed triangle surfaces in patient LPS millimetres from masks: marching cubes, windowed-sinc
smoothing (no shrinkage), decimation (server/imaging/decimate.py), outward normals, a
watertightness check.

The mask is padded by one background voxel, so a bone cut by the scan's edge is capped there and
the surface is closed. Vertices go through the full image geometry,
`lps = origin + direction · diag(spacing) · (i, j, k)`, so sagittal and oblique volumes come out in
the right place. Faces are counter-clockwise seen from outside (outward normals).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import SimpleITK as sitk
from scipy import sparse
from skimage.measure import marching_cubes

from server.imaging.decimate import decimate
from server.imaging.mesh import (
    Mesh,
    MeshNotWatertight,
    SurfaceError,
    SurfaceReport,
    is_watertight,
    measure,
    require_watertight,
    volume_and_area,
)
from server.imaging.segment import Mask, Progress, SeedPointError, bounding_box_zyx, keep_component

__all__ = [
    "Mesh",
    "MeshNotWatertight",
    "Surface",
    "SurfaceError",
    "SurfaceParams",
    "SurfaceReport",
    "decimate",
    "extract_surface",
    "is_watertight",
    "mask_to_mesh",
    "measure",
    "require_watertight",
    "smooth",
]
SLAB_SLICES = 32  # marching cubes runs on slabs: a float32 copy of 32 slices, not of the whole crop


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
    notes: list[str] = []
    if params.target_faces is not None and len(mesh.faces) > params.target_faces:
        report("decimation", 0.5)
        mesh = decimate(mesh, params.target_faces, notes=notes)
    report("checking", 0.95)
    require_watertight(mesh)
    measured = measure(mesh, notes)
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
    if volume_and_area(vertices, faces)[0] < 0:  # the index → LPS map may be a reflection
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
        x2 = x1 + umbrella @ x1 - x0  # T_{n+1} = 2·((I + W)/2)·T_n - T_{n-1}
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
