"""Measuring a SimpleITK volume against a phantom's analytic truth, and comparing two grids.

Arrays from SimpleITK are (z, y, x); physical points are LPS mm. A shape's measured centre is the
centroid of its partial-volume bone fraction f = clip((HU - body_hu) / (shape_hu - body_hu), 0, 1)
over voxels within `margin_mm` of its surface, so it is free of threshold bias.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from tests.support.phantoms import CtPhantom


def voxel_centres_lps(image: sitk.Image) -> np.ndarray:
    """(z, y, x, 3) LPS centres of every voxel: origin + D · diag(spacing) · (x, y, z)."""
    size_x, size_y, size_z = image.GetSize()
    z, y, x = np.meshgrid(np.arange(size_z), np.arange(size_y), np.arange(size_x), indexing="ij")
    index = np.stack([x, y, z], axis=-1).astype(np.float64)
    matrix = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())
    return np.asarray(image.GetOrigin()) + index @ matrix.T


def shape_centre_errors_mm(image: sitk.Image, phantom: CtPhantom, margin_mm: float = 1.8) -> list[float]:
    """Distance from each bone shape's analytic centre to its measured centroid."""
    hu = sitk.GetArrayFromImage(image).astype(np.float64).reshape(-1)
    points = voxel_centres_lps(image).reshape(-1, 3)
    errors = []
    for shape in phantom.shapes:
        near = shape.signed_distance_mm(points) < margin_mm
        fraction = np.clip((hu[near] - phantom.body_hu) / (shape.hu - phantom.body_hu), 0.0, 1.0)
        centroid = (points[near] * fraction[:, None]).sum(axis=0) / fraction.sum()
        errors.append(float(np.linalg.norm(centroid - np.asarray(shape.centre_lps))))
    return errors


def bone_volume_mm3(image: sitk.Image, phantom: CtPhantom) -> float:
    """Partial-volume sum of bone over the whole image (shapes share one HU)."""
    hu = sitk.GetArrayFromImage(image).astype(np.float64)
    bone_hu = phantom.shapes[0].hu
    fraction = np.clip((hu - phantom.body_hu) / (bone_hu - phantom.body_hu), 0.0, 1.0)
    return float(fraction.sum() * np.prod(image.GetSpacing()))


def oriented_alike(image: sitk.Image, reference: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    """Both images permuted/flipped to the reference's nearest orientation code, so that grids
    describing the same voxels compare equal index by index."""
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(reference.GetDirection())
    return sitk.DICOMOrient(image, code), sitk.DICOMOrient(reference, code)


def grid_differences(image: sitk.Image, reference: sitk.Image) -> tuple[float, float, float]:
    """(max origin difference mm, max spacing difference mm, max direction cosine difference)."""
    a, b = oriented_alike(image, reference)
    assert a.GetSize() == b.GetSize(), f"sizes differ: {a.GetSize()} vs {b.GetSize()}"
    return (
        float(np.abs(np.subtract(a.GetOrigin(), b.GetOrigin())).max()),
        float(np.abs(np.subtract(a.GetSpacing(), b.GetSpacing())).max()),
        float(np.abs(np.subtract(a.GetDirection(), b.GetDirection())).max()),
    )


def nifti_sform(path: Path) -> np.ndarray:
    """The 4x4 sform of a NIfTI-1 file as stored on disk (RAS mm), read with struct: SimpleITK cannot
    represent the sheared affine dcm2niix keeps for tilted series."""
    header = path.read_bytes()[:348]
    (size,) = struct.unpack_from("<i", header, 0)
    endian = "<" if size == 348 else ">"
    rows = [struct.unpack_from(f"{endian}4f", header, offset) for offset in (280, 296, 312)]
    return np.vstack([np.asarray(rows, dtype=np.float64), [0.0, 0.0, 0.0, 1.0]])
