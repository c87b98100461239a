"""Bone (or any tissue) masks from a CT volume in HU: threshold, closing, one connected component,
3D hole filling. Also label maps made elsewhere (3D Slicer NRRD, NIfTI).

Masks are uint8 SimpleITK images (0/1) on the volume's grid: same size, origin, spacing and
direction (LPS). numpy arrays from SimpleITK are z,y,x; SimpleITK indices and sizes are x,y,z.
All work after the threshold happens on the mask's bounding box, so a small bone in a large scan
costs little.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from server.imaging.label_map_files import LabelMapFormatError, identify_label_map

# InVesalius threshold presets, HU, inclusive.
HU_PRESETS: dict[str, tuple[float, float]] = {
    "bone": (226.0, 3071.0),
    "compact_bone_adult": (662.0, 1988.0),
    "spongial_bone_adult": (148.0, 661.0),
    "soft_tissue": (-700.0, 225.0),
    "muscle": (-5.0, 135.0),
    "fat": (-205.0, -51.0),
}

Keep = Literal["largest", "seed", "all"]
Progress = Callable[[str, float], None]  # (stage, fraction done 0..1)
# Foreground components use face (6-) connectivity; the background uses the complementary
# 26-connectivity, so a cavity touching the outside only through a voxel corner stays open.
FACE_CONNECTED = ndimage.generate_binary_structure(3, 1)
FULLY_CONNECTED = ndimage.generate_binary_structure(3, 3)


class SegmentationError(ValueError):
    """The volume, parameters or label map cannot give a mask; the message says why."""


class SeedPointError(SegmentationError):
    """The seed point is outside the volume or not in the thresholded mask."""


@dataclass(frozen=True)
class SegmentationParams:
    """`preset` names a range of HU_PRESETS; `hu_min`/`hu_max` (both) give a custom range instead.
    `keep`: the largest component, the one containing `seed_lps` (patient LPS mm), or all.
    `closing_radius_mm` > 0 bridges gaps narrower than about twice the radius before the
    component is chosen (thin cortical bone broken by partial volume)."""

    preset: str = "bone"
    hu_min: float | None = None
    hu_max: float | None = None
    keep: Keep = "largest"
    seed_lps: tuple[float, float, float] | None = None
    closing_radius_mm: float = 0.0
    fill_holes: bool = True

    def hu_range(self) -> tuple[float, float]:
        if (self.hu_min is None) != (self.hu_max is None):
            raise SegmentationError("a custom HU range needs both hu_min and hu_max")
        if self.hu_min is not None and self.hu_max is not None:
            lo, hi = float(self.hu_min), float(self.hu_max)
        elif self.preset in HU_PRESETS:
            lo, hi = HU_PRESETS[self.preset]
        else:
            raise SegmentationError(f"unknown HU preset {self.preset!r}; known: {sorted(HU_PRESETS)}")
        if lo > hi:
            raise SegmentationError(f"empty HU range: hu_min {lo} > hu_max {hi}")
        return lo, hi


@dataclass(frozen=True)
class SegmentationReport:
    voxels: int
    volume_ml: float
    components_found: int  # face-connected components before one was kept
    hu_range: tuple[float, float] | None  # None for a loaded label map
    kept: str
    closing_radius_vox_xyz: tuple[int, int, int] = (0, 0, 0)
    filled_voxels: int = 0  # voxels added by hole filling


@dataclass(frozen=True)
class Mask:
    image: sitk.Image  # uint8 0/1 on the volume's grid
    report: SegmentationReport


def segment(image: sitk.Image, params: SegmentationParams | None = None, progress: Progress | None = None) -> Mask:
    """Threshold `image` (HU) into a mask, then close, keep a component and fill 3D cavities."""
    params = params or SegmentationParams()
    report = progress or (lambda stage, fraction: None)
    _check_volume(image)
    lo, hi = params.hu_range()
    if params.keep == "seed" and params.seed_lps is None:
        raise SegmentationError("keep='seed' needs seed_lps")
    seed_zyx = _seed_index_zyx(image, params.seed_lps) if params.keep == "seed" else None

    report("threshold", 0.0)
    thresholded = sitk.BinaryThreshold(image, lo, hi, 1, 0)  # uint8, inclusive, multi-threaded
    box = bounding_box_zyx(sitk.GetArrayViewFromImage(thresholded))
    if box is None:
        raise SegmentationError(f"no voxel of the volume is between {lo:g} and {hi:g} HU")
    crop = np.array(sitk.GetArrayViewFromImage(thresholded)[box], order="C")  # a copy: views are read-only
    del thresholded

    radius_xyz = closing_radius_vox(image.GetSpacing(), params.closing_radius_mm)
    if any(radius_xyz):
        report("closing", 0.2)
        closed = sitk.BinaryMorphologicalClosing(
            sitk.GetImageFromArray(crop), list(radius_xyz), sitk.sitkBall, 1.0, True
        )
        crop = sitk.GetArrayFromImage(closed)
        del closed

    report("components", 0.5)
    local_seed = None
    if seed_zyx is not None:
        local_seed = tuple(s - b.start for s, b in zip(seed_zyx, box, strict=True))
        if not all(0 <= s < n for s, n in zip(local_seed, crop.shape, strict=True)) or not crop[local_seed]:
            hu = image.GetPixel(*(int(i) for i in reversed(seed_zyx)))
            raise SeedPointError(
                f"seed {_fmt(params.seed_lps)} LPS mm (voxel x,y,z {tuple(reversed(seed_zyx))}) is at {hu:g} HU, "
                f"not in the mask of {lo:g}..{hi:g} HU"
            )
    crop, found = keep_component(crop, params.keep, local_seed)
    inner = bounding_box_zyx(crop)  # noise far away widened the first box; cavities lie within this one
    assert inner is not None
    crop = np.ascontiguousarray(crop[inner])
    box = (
        slice(box[0].start + inner[0].start, box[0].start + inner[0].stop),
        slice(box[1].start + inner[1].start, box[1].start + inner[1].stop),
        slice(box[2].start + inner[2].start, box[2].start + inner[2].stop),
    )

    filled = 0
    if params.fill_holes:
        report("fill holes", 0.75)
        before = int(np.count_nonzero(crop))
        crop = fill_cavities(crop)
        filled = int(np.count_nonzero(crop)) - before

    mask = _paste(crop, box, image)
    voxels = int(np.count_nonzero(crop))
    report("done", 1.0)
    return Mask(
        mask,
        SegmentationReport(
            voxels=voxels,
            volume_ml=voxels * float(np.prod(image.GetSpacing())) / 1000.0,
            components_found=found,
            hu_range=(lo, hi),
            kept=params.keep,
            closing_radius_vox_xyz=radius_xyz,
            filled_voxels=filled,
        ),
    )


def bounding_box_zyx(array: np.ndarray) -> tuple[slice, slice, slice] | None:
    """The smallest box (numpy slices, z,y,x) holding every nonzero voxel, or None if there is none."""
    spans = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(array.any(axis=others))
        if hits.size == 0:
            return None
        spans.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return spans[0], spans[1], spans[2]


def closing_radius_vox(spacing_xyz: Sequence[float], radius_mm: float) -> tuple[int, int, int]:
    """A radius in mm as whole voxels per axis (x,y,z): anisotropic voxels get an ellipsoid kernel."""
    if radius_mm < 0:
        raise SegmentationError(f"closing radius must be >= 0 mm, got {radius_mm}")
    r = [round(radius_mm / s) for s in spacing_xyz]
    return int(r[0]), int(r[1]), int(r[2])


def keep_component(array: np.ndarray, keep: Keep, seed_zyx: tuple[int, ...] | None = None) -> tuple[np.ndarray, int]:
    """Keep the largest face-connected component, the one at `seed_zyx`, or all, in place in the
    uint8 `array`. Returns it and the number of components found."""
    labels, found = _label(array, FACE_CONNECTED)
    if keep == "all" or found <= 1:
        return array, found
    if keep == "seed":
        if seed_zyx is None:
            raise SegmentationError("keep='seed' needs a seed")
        chosen = int(labels[seed_zyx])
        if chosen == 0:
            raise SeedPointError(f"seed voxel z,y,x {seed_zyx} is not in the mask")
    else:
        sizes = np.zeros(found + 1, dtype=np.int64)
        for plane in labels:  # bincount casts to int64: per slice, not a 4x copy of the volume
            sizes += np.bincount(plane.ravel(), minlength=found + 1)
        sizes[0] = 0
        chosen = int(np.argmax(sizes))
    np.equal(labels, chosen, out=array.view(bool))
    return array, found


def fill_cavities(array: np.ndarray) -> np.ndarray:
    """Fill, in place, background not connected to the array's border in 3D (closed cavities). A
    region open to the border through any path, e.g. a skull's inside through the foramen magnum,
    stays empty; filling slice by slice in 2D would fill it."""
    background = array == 0
    labels, found = _label(background, FULLY_CONNECTED)
    del background
    open_to_border = np.zeros(found + 1, dtype=bool)
    for axis in range(3):
        for end in (0, -1):
            open_to_border[np.unique(np.take(labels, end, axis=axis))] = True
    open_to_border[0] = True  # label 0 is the foreground itself
    array |= ~open_to_border[labels]
    return array


def _label(array: np.ndarray, structure: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components as uint16 labels (half of int32's memory), int32 when there are more."""
    try:
        labels, found = ndimage.label(array, structure, output=np.uint16)
    except RuntimeError:  # more than 65535 components
        labels, found = ndimage.label(array, structure, output=np.int32)
    return labels, int(found)


def load_label_map(source: str | os.PathLike[str] | bytes, label: int | None = None) -> Mask:
    """A mask from a label map file (NRRD, .seg.nrrd, NIfTI .nii/.nii.gz) or its bytes: voxels equal
    to `label`, or every nonzero voxel if None. Geometry comes from the file; SimpleITK reads NIfTI's
    RAS affine into LPS origin and direction."""
    image = _read_image(source)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise SegmentationError(
            f"label map must be a 3D scalar image, got {image.GetDimension()}D with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel (export a labelmap, not a 4D segmentation)"
        )
    values = sitk.GetArrayViewFromImage(image)
    selected = (values != 0) if label is None else (values == label)
    box = bounding_box_zyx(selected)
    if box is None:
        present = np.unique(values)
        raise SegmentationError(f"label {label} not in the label map; values present: {present[:20].tolist()}")
    crop = np.ascontiguousarray(selected[box]).view(np.uint8)
    _, found = _label(crop, FACE_CONNECTED)
    voxels = int(np.count_nonzero(crop))
    geometry = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    geometry.CopyInformation(image)
    return Mask(
        _paste(crop, box, geometry),
        SegmentationReport(
            voxels=voxels,
            volume_ml=voxels * float(np.prod(image.GetSpacing())) / 1000.0,
            components_found=int(found),
            hu_range=None,
            kept="label" if label is None else f"label {label}",
        ),
    )


def _read_image(source: str | os.PathLike[str] | bytes) -> sitk.Image:
    if not isinstance(source, bytes):
        try:
            return sitk.ReadImage(str(source))
        except RuntimeError as exc:
            raise SegmentationError(f"cannot read label map {source}: {str(exc).strip().splitlines()[-1]}") from exc
    suffix = _label_map_suffix(source)
    with tempfile.TemporaryDirectory(prefix="trinity-labelmap-") as folder:
        path = Path(folder) / f"labelmap{suffix}"
        path.write_bytes(source)
        try:
            return sitk.ReadImage(str(path))
        except RuntimeError as exc:
            raise SegmentationError(f"cannot read label map ({suffix}): {str(exc).strip().splitlines()[-1]}") from exc


def _label_map_suffix(data: bytes) -> str:
    """File suffix from the first bytes: SimpleITK picks its reader by name."""
    try:
        return identify_label_map(io.BytesIO(data)).suffix
    except LabelMapFormatError as exc:
        raise SegmentationError(exc.message) from None


def _check_volume(image: sitk.Image) -> None:
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise SegmentationError(f"need a 3D scalar volume in HU, got a {image.GetDimension()}D image")


def _seed_index_zyx(image: sitk.Image, seed_lps: tuple[float, float, float] | None) -> tuple[int, int, int]:
    assert seed_lps is not None
    continuous = image.TransformPhysicalPointToContinuousIndex([float(v) for v in seed_lps])
    index_xyz = [round(c) for c in continuous]
    size = image.GetSize()
    if not all(0 <= i < n for i, n in zip(index_xyz, size, strict=True)):
        raise SeedPointError(
            f"seed {_fmt(seed_lps)} LPS mm is outside the volume (voxel x,y,z {tuple(index_xyz)}, size {size})"
        )
    return index_xyz[2], index_xyz[1], index_xyz[0]


def _paste(crop: np.ndarray, box: tuple[slice, slice, slice], like: sitk.Image) -> sitk.Image:
    """The cropped uint8 array placed back on `like`'s full grid (one full-size allocation)."""
    small = sitk.GetImageFromArray(np.ascontiguousarray(crop, dtype=np.uint8))
    size_xyz = like.GetSize()
    lower = [box[2].start, box[1].start, box[0].start]
    upper = [n - b.stop for n, b in zip(size_xyz, (box[2], box[1], box[0]), strict=True)]
    full = sitk.ConstantPad(small, lower, upper, 0)
    full.CopyInformation(like)
    return full


def _fmt(point: Sequence[float] | None) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in point or ()) + ")"
