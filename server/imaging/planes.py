"""Per-frame plane geometry and rescale read from a header: classic single-frame images and enhanced
multi-frame objects (functional groups). Nothing is derived here; geometry.py does the arithmetic."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset


@dataclass(frozen=True)
class FramePlane:
    """Where one frame lies in patient LPS mm, as the header states it.

    Voxel (row i, column j) is at position_lps + j·Δc·row_dir + i·Δr·col_dir, with
    orientation = (row_dir, col_dir) and pixel_spacing_mm = (Δr, Δc): row spacing first, as in DICOM.
    """

    position_lps: tuple[float, float, float] | None
    orientation: tuple[float, float, float, float, float, float] | None
    pixel_spacing_mm: tuple[float, float] | None
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    slice_thickness_mm: float | None = None


def _floats(value: object, count: int) -> tuple[float, ...] | None:
    """`count` finite floats from a DS/FD value, or None when absent or malformed."""
    if value is None:
        return None
    try:
        items: list[Any] = list(value) if isinstance(value, Iterable) and not isinstance(value, str) else [value]
        numbers = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        return None
    if len(numbers) != count or any(n != n or abs(n) == float("inf") for n in numbers):
        return None
    return numbers


def _get(ds: Dataset | None, keyword: str) -> object:
    try:
        return None if ds is None else ds.get(keyword)
    except Exception:  # a malformed value counts as absent
        return None


def _plane(
    pos_src: Dataset | None, ori_src: Dataset | None, meas_src: Dataset | None, pvt_src: Dataset | None
) -> FramePlane:
    position = _floats(_get(pos_src, "ImagePositionPatient"), 3)
    orientation = _floats(_get(ori_src, "ImageOrientationPatient"), 6)
    spacing = _floats(_get(meas_src, "PixelSpacing"), 2)
    if spacing is not None and min(spacing) <= 0:
        spacing = None
    slope = _floats(_get(pvt_src, "RescaleSlope"), 1)
    intercept = _floats(_get(pvt_src, "RescaleIntercept"), 1)
    thickness = _floats(_get(meas_src, "SliceThickness"), 1)
    return FramePlane(
        position_lps=position,  # type: ignore[arg-type]
        orientation=orientation,  # type: ignore[arg-type]
        pixel_spacing_mm=spacing,  # type: ignore[arg-type]
        rescale_slope=slope[0] if slope and slope[0] != 0 else 1.0,
        rescale_intercept=intercept[0] if intercept else 0.0,
        slice_thickness_mm=thickness[0] if thickness else None,
    )


def _first(ds: Dataset | None, sequence: str) -> Dataset | None:
    try:
        seq = None if ds is None else ds.get(sequence)
        return seq[0] if seq else None
    except Exception:
        return None


def frame_planes(ds: Dataset, frames: int) -> list[FramePlane]:
    """One FramePlane per frame. Classic multi-frame objects state one position for all frames, which
    is no stack geometry: their frames get position None."""
    if "PerFrameFunctionalGroupsSequence" not in ds and "SharedFunctionalGroupsSequence" not in ds:
        plane = _plane(ds, ds, ds, ds)
        if frames == 1:
            return [plane]
        return [
            FramePlane(None, plane.orientation, plane.pixel_spacing_mm, plane.rescale_slope, plane.rescale_intercept)
        ] * frames
    shared = _first(ds, "SharedFunctionalGroupsSequence")
    per_frame = _get(ds, "PerFrameFunctionalGroupsSequence") or []
    planes = []
    for index in range(frames):
        own = per_frame[index] if index < len(per_frame) else None  # type: ignore[arg-type, index]

        def macro(name: str, own: Dataset | None = own) -> Dataset | None:
            # A functional group macro sits in the frame's own group or, if the same for all, in the shared one.
            return _first(own, name) or _first(shared, name)

        planes.append(
            _plane(
                macro("PlanePositionSequence"),
                macro("PlaneOrientationSequence"),
                macro("PixelMeasuresSequence"),
                macro("PixelValueTransformationSequence"),
            )
        )
    return planes
