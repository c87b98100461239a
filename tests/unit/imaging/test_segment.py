"""Segmentation: HU presets, component choice by size or by a seed point in LPS mm, closing in mm,
3D hole filling (closed cavities filled, a skull open to the outside left hollow), label maps."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from server.imaging.segment import (
    HU_PRESETS,
    SeedPointError,
    SegmentationError,
    SegmentationParams,
    closing_radius_vox,
    load_label_map,
    segment,
)
from tests.unit.imaging.volumes import OBLIQUE, SAGITTAL, ball, minus, union, volume

CENTRE = (10.0, -20.0, 40.0)


def mask_array(mask: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(mask)


def test_invesalius_presets_and_custom_range() -> None:
    assert HU_PRESETS["bone"] == (226.0, 3071.0)
    assert HU_PRESETS["compact_bone_adult"] == (662.0, 1988.0)
    assert HU_PRESETS["spongial_bone_adult"] == (148.0, 661.0)
    assert HU_PRESETS["soft_tissue"] == (-700.0, 225.0)
    assert HU_PRESETS["muscle"] == (-5.0, 135.0)
    assert HU_PRESETS["fat"] == (-205.0, -51.0)
    assert SegmentationParams(hu_min=-10, hu_max=90).hu_range() == (-10.0, 90.0)
    with pytest.raises(SegmentationError, match="unknown HU preset"):
        SegmentationParams(preset="cartilage").hu_range()
    with pytest.raises(SegmentationError, match="both"):
        SegmentationParams(hu_min=100).hu_range()


def test_threshold_is_inclusive_and_keeps_the_geometry() -> None:
    values = np.array([[[225, 226, 3071, 3072, 700, -100]]], dtype=np.int16)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((0.5, 0.7, 1.3))
    image.SetOrigin((1.0, 2.0, 3.0))
    image.SetDirection([float(v) for v in OBLIQUE.ravel()])
    result = segment(image, SegmentationParams(keep="all", fill_holes=False))
    assert mask_array(result.image).tolist() == [[[0, 1, 1, 0, 1, 0]]]
    assert result.image.GetPixelID() == sitk.sitkUInt8
    assert result.image.GetSpacing() == image.GetSpacing()
    assert result.image.GetOrigin() == image.GetOrigin()
    assert result.image.GetDirection() == image.GetDirection()
    fat = segment(image, SegmentationParams(preset="fat", keep="all"))
    assert mask_array(fat.image).tolist() == [[[0, 0, 0, 0, 0, 1]]]


def two_balls() -> sitk.Image:
    big, small = (CENTRE[0] - 12, CENTRE[1], CENTRE[2]), (CENTRE[0] + 14, CENTRE[1], CENTRE[2])
    return volume(
        union(ball(big, 9.0), ball(small, 5.0)),
        centre_lps=CENTRE,
        size_xyz=(30, 24, 40),  # sagittal: x runs to posterior, y to inferior, z to the right
        spacing_mm=(0.9, 1.0, 1.2),
        direction=SAGITTAL,
    )


def test_largest_component_is_kept_and_reported() -> None:
    image = two_balls()
    result = segment(image)
    assert result.report.components_found == 2
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000
    expected_ml = 4 / 3 * np.pi * 9.0**3 / 1000
    assert result.report.volume_ml == pytest.approx(expected_ml, rel=0.05)
    assert result.report.voxels * voxel_ml == pytest.approx(result.report.volume_ml)
    everything = segment(image, SegmentationParams(keep="all"))
    assert everything.report.voxels > result.report.voxels


def test_seed_point_in_lps_selects_its_component() -> None:
    image = two_balls()
    small_centre = (CENTRE[0] + 14, CENTRE[1], CENTRE[2])
    result = segment(image, SegmentationParams(keep="seed", seed_lps=small_centre))
    expected_ml = 4 / 3 * np.pi * 5.0**3 / 1000
    assert result.report.volume_ml == pytest.approx(expected_ml, rel=0.08)
    labels, _ = ndimage.label(mask_array(result.image))
    assert labels.max() == 1
    seed_index = result.image.TransformPhysicalPointToIndex(small_centre)
    assert result.image.GetPixel(seed_index) == 1


def test_seed_outside_the_volume_or_the_mask_is_refused_clearly() -> None:
    image = two_balls()
    with pytest.raises(SeedPointError, match="outside the volume"):
        segment(image, SegmentationParams(keep="seed", seed_lps=(500.0, 0.0, 0.0)))
    with pytest.raises(SeedPointError, match=r"at 0 HU, not in the mask of 226\.\.3071 HU"):
        segment(image, SegmentationParams(keep="seed", seed_lps=CENTRE))  # between the balls: soft tissue
    with pytest.raises(SegmentationError, match="needs seed_lps"):
        segment(image, SegmentationParams(keep="seed"))


def test_closing_in_mm_bridges_a_thin_gap() -> None:
    gap = lambda p: np.abs(p[:, 2] - CENTRE[2]) < 0.5  # noqa: E731  a 1 mm crack across the ball
    image = volume(minus(ball(CENTRE, 10.0), gap), centre_lps=CENTRE, size_xyz=(30, 30, 36), spacing_mm=(0.8, 0.8, 0.7))
    cracked = segment(image)
    assert cracked.report.components_found == 2
    closed = segment(image, SegmentationParams(closing_radius_mm=1.5))
    assert closed.report.components_found == 1
    assert closed.report.closing_radius_vox_xyz == (2, 2, 2)
    assert closed.report.voxels > 1.8 * cracked.report.voxels


def test_closing_radius_is_converted_per_axis() -> None:
    assert closing_radius_vox((0.5, 0.8, 2.5), 2.0) == (4, 2, 1)
    assert closing_radius_vox((1.0, 1.0, 1.0), 0.0) == (0, 0, 0)
    with pytest.raises(SegmentationError):
        closing_radius_vox((1.0, 1.0, 1.0), -1.0)


def shell(outer: float, inner: float) -> sitk.Image:
    """A skull-like shell, oblique grid; the cavity is closed."""
    return volume(
        minus(ball(CENTRE, outer), ball(CENTRE, inner)),
        centre_lps=CENTRE,
        size_xyz=(44, 40, 36),
        spacing_mm=(1.0, 1.1, 1.25),
        direction=OBLIQUE,
    )


def test_closed_cavity_inside_bone_is_filled_in_3d() -> None:
    image = shell(18.0, 12.0)
    hollow = segment(image, SegmentationParams(fill_holes=False))
    filled = segment(image)
    cavity_ml = 4 / 3 * np.pi * 12.0**3 / 1000
    assert filled.report.filled_voxels > 0
    added_ml = filled.report.volume_ml - hollow.report.volume_ml
    assert added_ml == pytest.approx(cavity_ml, rel=0.05)
    assert filled.report.volume_ml == pytest.approx(4 / 3 * np.pi * 18.0**3 / 1000, rel=0.03)


def test_skull_open_to_the_outside_is_not_filled_although_every_slice_shows_a_closed_ring() -> None:
    # A shell with a hole at the bottom (a foramen magnum): its inside reaches the outside in 3D.
    foramen = lambda p: (np.hypot(p[:, 0] - CENTRE[0], p[:, 1] - CENTRE[1]) < 5.0) & (p[:, 2] < CENTRE[2])  # noqa: E731
    image = volume(
        minus(minus(ball(CENTRE, 18.0), ball(CENTRE, 12.0)), foramen),
        centre_lps=CENTRE,
        size_xyz=(44, 44, 44),
        spacing_mm=(1.0, 1.0, 1.0),
    )
    result = segment(image)
    assert result.report.filled_voxels == 0
    # Filling each axial slice in 2D would fill the cranium: the test shape tells the two apart.
    mask = mask_array(result.image)
    slice_filled = np.stack([ndimage.binary_fill_holes(plane) for plane in mask])
    assert slice_filled.sum() - mask.sum() > 0.5 * (4 / 3 * np.pi * 12.0**3)


def test_cavity_touching_the_volume_border_stays_open() -> None:
    # The scan cuts the skull's top off: its inside is open at the volume's edge.
    image = volume(
        minus(ball(CENTRE, 18.0), ball(CENTRE, 12.0)),
        centre_lps=(CENTRE[0], CENTRE[1], CENTRE[2] + 8.0),
        size_xyz=(44, 44, 30),
        spacing_mm=(1.0, 1.0, 1.0),
    )
    assert segment(image).report.filled_voxels == 0


def test_empty_range_is_refused() -> None:
    image = shell(18.0, 12.0)
    with pytest.raises(SegmentationError, match="no voxel"):
        segment(image, SegmentationParams(hu_min=5000, hu_max=6000))


def test_progress_reports_stages_in_order() -> None:
    seen: list[tuple[str, float]] = []
    segment(two_balls(), SegmentationParams(closing_radius_mm=1.0), progress=lambda s, f: seen.append((s, f)))
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [s for s, _ in seen][:2] == ["threshold", "closing"]


def label_volume() -> sitk.Image:
    labels = np.zeros((12, 14, 16), dtype=np.uint16)
    labels[2:5, 3:8, 4:9] = 3
    labels[7:10, 6:12, 6:14] = 7
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((0.6, 0.7, 1.5))
    image.SetOrigin((-30.0, 12.0, 88.0))
    image.SetDirection([float(v) for v in OBLIQUE.ravel()])
    return image


def test_label_map_nrrd_from_path_and_bytes_keeps_geometry_and_selects_a_label(tmp_path: Path) -> None:
    image = label_volume()
    path = tmp_path / "Segmentation.seg.nrrd"
    sitk.WriteImage(image, str(path))
    for source in (path, path.read_bytes()):
        mask = load_label_map(source, label=7)
        assert mask.report.voxels == 3 * 6 * 8
        assert mask_array(mask.image)[8, 7, 7] == 1 and mask_array(mask.image)[3, 4, 5] == 0
        assert np.allclose(mask.image.GetOrigin(), image.GetOrigin())
        assert np.allclose(mask.image.GetDirection(), image.GetDirection())
        assert np.allclose(mask.image.GetSpacing(), image.GetSpacing())
    anything = load_label_map(path)
    assert anything.report.voxels == 3 * 5 * 5 + 3 * 6 * 8
    assert anything.report.components_found == 2
    with pytest.raises(SegmentationError, match=r"label 5 not in the label map; values present: \[0, 3, 7\]"):
        load_label_map(path, label=5)


def nifti_bytes(data_xyz: np.ndarray, affine_ras: np.ndarray) -> bytes:
    """A NIfTI-1 file with the given RAS affine as both sform and qform (no rotation)."""
    header = bytearray(352)
    struct.pack_into("<i", header, 0, 348)
    nx, ny, nz = data_xyz.shape
    struct.pack_into("<8h", header, 40, 3, nx, ny, nz, 1, 1, 1, 1)
    struct.pack_into("<hh", header, 70, 2, 8)  # uint8
    spacing = np.diag(affine_ras)[:3]
    struct.pack_into("<8f", header, 76, 1.0, *spacing, 0, 0, 0, 0)
    struct.pack_into("<f", header, 108, 352.0)
    struct.pack_into("<f", header, 112, 1.0)
    header[123] = 2  # millimetres
    struct.pack_into("<hh", header, 252, 1, 1)  # qform and sform: scanner coordinates
    struct.pack_into("<6f", header, 256, 0, 0, 0, *affine_ras[:3, 3])
    for row in range(3):
        struct.pack_into("<4f", header, 280 + 16 * row, *affine_ras[row])
    header[344:348] = b"n+1\0"
    return bytes(header) + np.asfortranarray(data_xyz.astype(np.uint8)).tobytes(order="F")


def test_label_map_nifti_ras_affine_becomes_lps_geometry() -> None:
    data = np.zeros((6, 5, 4), dtype=np.uint8)  # x,y,z
    data[1, 2, 3] = 1
    affine = np.array([[2.0, 0, 0, 10.0], [0, 3.0, 0, 20.0], [0, 0, 4.0, 30.0], [0, 0, 0, 1]])
    mask = load_label_map(nifti_bytes(data, affine))
    assert np.allclose(mask.image.GetOrigin(), (-10.0, -20.0, 30.0))
    assert np.allclose(mask.image.GetSpacing(), (2.0, 3.0, 4.0))
    assert np.allclose(np.array(mask.image.GetDirection()).reshape(3, 3), np.diag([-1.0, -1.0, 1.0]))
    # the labelled voxel's centre: RAS (10 + 2·1, 20 + 3·2, 30 + 4·3) = LPS (-12, -26, 42)
    assert mask.report.voxels == 1
    where = np.argwhere(mask_array(mask.image))[0][::-1]
    assert np.allclose(mask.image.TransformIndexToPhysicalPoint([int(v) for v in where]), (-12.0, -26.0, 42.0))


def test_label_map_garbage_is_refused() -> None:
    with pytest.raises(SegmentationError, match="neither NRRD nor NIfTI"):
        load_label_map(b"GIF89a not a label map")
