"""Small CT volumes built directly as SimpleITK images: analytic shapes at known LPS positions on
grids with anisotropic spacing and axial, sagittal, oblique or flipped direction matrices."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import SimpleITK as sitk

Inside = Callable[[np.ndarray], np.ndarray]  # (N, 3) LPS mm -> (N,) bool

AXIAL = np.eye(3)
# DICOM sagittal: rows along +P, columns along -S (head up), slices step along -L (row x column)
SAGITTAL = np.column_stack([(0.0, 1.0, 0.0), (0.0, 0.0, -1.0), (-1.0, 0.0, 0.0)])
# NIfTI-like storage read into LPS: voxel x grows to the right, y to anterior
FLIPPED = np.diag([-1.0, -1.0, 1.0])


def rotation(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    a = np.asarray(axis, dtype=np.float64)
    a /= np.linalg.norm(a)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    t = np.deg2rad(degrees)
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


OBLIQUE = rotation((1.0, 2.0, 0.5), 25.0)


def volume(
    inside: Inside,
    *,
    centre_lps: tuple[float, float, float],
    size_xyz: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    direction: np.ndarray = AXIAL,
    hu_inside: float = 1000.0,
    hu_outside: float = 0.0,
) -> sitk.Image:
    """int16 HU volume whose voxel centres are inside/outside the shape (no partial volume, so a
    threshold mask is exactly the voxels whose centre is inside)."""
    d = np.asarray(direction, dtype=np.float64)
    to_lps = d * np.asarray(spacing_mm)
    middle = (np.asarray(size_xyz, dtype=np.float64) - 1) / 2
    origin = np.asarray(centre_lps) - to_lps @ middle
    k, j, i = np.meshgrid(*(np.arange(n) for n in reversed(size_xyz)), indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(np.float64)
    points = ijk @ to_lps.T + origin
    hu = np.where(inside(points), hu_inside, hu_outside).astype(np.int16).reshape(k.shape)
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing([float(s) for s in spacing_mm])
    image.SetOrigin([float(o) for o in origin])
    image.SetDirection([float(v) for v in d.ravel()])
    return image


def ball(centre: tuple[float, float, float], radius_mm: float) -> Inside:
    c = np.asarray(centre)
    return lambda p: np.linalg.norm(p - c, axis=1) <= radius_mm


def union(*shapes: Inside) -> Inside:
    return lambda p: np.logical_or.reduce([s(p) for s in shapes])


def minus(shape: Inside, hole: Inside) -> Inside:
    return lambda p: shape(p) & ~hole(p)


def voxel_centre_lps(image: sitk.Image, index_xyz: tuple[int, int, int]) -> np.ndarray:
    return np.asarray(image.TransformIndexToPhysicalPoint([int(v) for v in index_xyz]))
