"""Stack geometry from every slice's ImagePositionPatient, ImageOrientationPatient and PixelSpacing.

Pure arithmetic in patient LPS mm; arrays of positions are (n, 3). A stack is sorted along the normal
row_dir x col_dir. Positions may also drift in-plane as the normal offset grows (gantry tilt: a
sheared grid); the drift must be linear, and its angle to the normal is the measured tilt. The output
grid is always orthogonal, with axes (row_dir, col_dir, normal), aligned to the first slice's pixel
lattice and widened by whole pixels to hold the sheared slices (dcm2niix's resliced layout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

POSITION_TOLERANCE_MM = 0.02  # slices within this of their uniform-grid place count as on it
LINE_TOLERANCE_MM = 0.1  # in-plane offsets may stray this far from a straight line of positions
ORIENTATION_TOLERANCE = 1e-3  # direction cosines that differ less than this are one orientation


class SeriesProblemCode(StrEnum):
    MISSING_GEOMETRY = "missing_geometry"
    TOO_FEW_SLICES = "too_few_slices"
    DUPLICATE_POSITIONS = "duplicate_positions"
    GAP_TOO_LARGE = "gap_too_large"
    NOT_ON_A_LINE = "not_on_a_line"
    TOO_LARGE = "too_large"


class SeriesGeometryError(Exception):
    """Slices that cannot form one volume; `code` is stable, the message says why in words."""

    def __init__(self, code: SeriesProblemCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def axes_from_orientation(orientation: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit (row_dir, col_dir, normal) from an ImageOrientationPatient, col made orthogonal to row."""
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:6], dtype=np.float64)
    if np.linalg.norm(row) < 1e-6 or np.linalg.norm(col) < 1e-6:
        reason = f"ImageOrientationPatient {orientation} has a zero vector"
        raise SeriesGeometryError(SeriesProblemCode.MISSING_GEOMETRY, reason)
    row /= np.linalg.norm(row)
    col -= (col @ row) * row
    if np.linalg.norm(col) < 1e-3:
        reason = f"ImageOrientationPatient {orientation} has parallel axes"
        raise SeriesGeometryError(SeriesProblemCode.MISSING_GEOMETRY, reason)
    col /= np.linalg.norm(col)
    return row, col, np.cross(row, col)


@dataclass(frozen=True)
class StackLayout:
    """Sorted slices: order[k] is the input index of the k-th slice along the normal."""

    row_dir: np.ndarray
    col_dir: np.ndarray
    normal: np.ndarray
    spacing_row_mm: float  # Δr: distance between rows (along col_dir)
    spacing_col_mm: float  # Δc: distance between columns (along row_dir)
    order: np.ndarray
    first_position_lps: np.ndarray
    normal_offsets_mm: np.ndarray  # d_k - d_0 along the normal, ascending
    shear_mm_per_mm: tuple[float, float]  # in-plane drift (along row_dir, along col_dir) per mm of normal
    uniform: bool

    @property
    def tilt_deg(self) -> float:
        return math.degrees(math.atan(math.hypot(*self.shear_mm_per_mm)))

    @property
    def sheared(self) -> bool:
        drift_mm = math.hypot(*self.shear_mm_per_mm) * float(self.normal_offsets_mm[-1])
        return drift_mm > POSITION_TOLERANCE_MM

    @property
    def steps_mm(self) -> np.ndarray:
        return np.diff(self.normal_offsets_mm)


def analyse_stack(
    positions_lps: np.ndarray,
    orientation: tuple[float, ...],
    spacing_mm: tuple[float, float],
    *,
    max_gap_factor: float,
    max_gap_mm: float,
) -> StackLayout:
    """Sort, measure steps and shear, and refuse stacks that are no volume. Raises SeriesGeometryError."""
    positions = np.asarray(positions_lps, dtype=np.float64).reshape(-1, 3)
    if len(positions) < 2:
        reason = f"{len(positions)} slice: a volume needs at least 2"
        raise SeriesGeometryError(SeriesProblemCode.TOO_FEW_SLICES, reason)
    row, col, normal = axes_from_orientation(orientation)
    order = np.argsort(positions @ normal, kind="stable")
    sorted_positions = positions[order]
    rel = sorted_positions - sorted_positions[0]
    offsets = rel @ normal
    steps = np.diff(offsets)
    if steps.min() < POSITION_TOLERANCE_MM:
        k = int(steps.argmin())
        raise SeriesGeometryError(
            SeriesProblemCode.DUPLICATE_POSITIONS,
            f"two slices lie at the same position along the normal "
            f"({offsets[k]:.3f} and {offsets[k + 1]:.3f} mm from the first)",
        )
    median_step = float(np.median(steps))
    widest = float(steps.max())
    if widest > max_gap_factor * median_step or widest > max_gap_mm:
        k = int(steps.argmax())
        raise SeriesGeometryError(
            SeriesProblemCode.GAP_TOO_LARGE,
            f"gap of {widest:.2f} mm between slices {k} and {k + 1} (usual step "
            f"{median_step:.2f} mm; limits {max_gap_factor}x the step and {max_gap_mm} mm): "
            "too wide to interpolate",
        )
    in_plane = np.stack([rel @ row, rel @ col], axis=1)
    shear = in_plane.T @ offsets / float(offsets @ offsets)  # least squares through the first slice
    residual = float(np.abs(in_plane - np.outer(offsets, shear)).max())
    if residual > LINE_TOLERANCE_MM:
        raise SeriesGeometryError(
            SeriesProblemCode.NOT_ON_A_LINE,
            f"slice positions do not lie on one line (off by up to {residual:.2f} mm in-plane): more than one stack?",
        )
    expected = np.arange(len(offsets)) * offsets[-1] / (len(offsets) - 1)
    return StackLayout(
        row_dir=row,
        col_dir=col,
        normal=normal,
        spacing_row_mm=float(spacing_mm[0]),
        spacing_col_mm=float(spacing_mm[1]),
        order=order,
        first_position_lps=sorted_positions[0],
        normal_offsets_mm=offsets,
        shear_mm_per_mm=(float(shear[0]), float(shear[1])),
        uniform=bool(np.abs(offsets - expected).max() <= POSITION_TOLERANCE_MM),
    )


@dataclass(frozen=True)
class OutputGrid:
    """An orthogonal grid: voxel (j, i, m) at origin_lps + j·spacing[0]·axes[0] + i·spacing[1]·axes[1]
    + m·spacing[2]·axes[2] (SimpleITK's x, y, z order); `first_index` is where the first slice's pixel
    (0, 0) falls, in (columns, rows) of this grid."""

    origin_lps: np.ndarray
    axes: np.ndarray  # rows: row_dir, col_dir, normal
    spacing_mm: tuple[float, float, float]
    size: tuple[int, int, int]  # (columns, rows, slices)
    first_index: tuple[int, int]


def output_grid(layout: StackLayout, columns: int, rows: int) -> OutputGrid:
    extent_mm = float(layout.normal_offsets_mm[-1])
    # Uneven stacks get the finest real step, adjusted so the first and last slices stay where they are.
    finest_mm = float(layout.steps_mm.min())
    slices = len(layout.normal_offsets_mm) if layout.uniform else round(extent_mm / finest_mm) + 1
    step_mm = extent_mm / (slices - 1)
    # Whole pixels of widening on the side the slices drift to (drift per axis at the last slice).
    drift = (
        layout.shear_mm_per_mm[0] * extent_mm / layout.spacing_col_mm,
        layout.shear_mm_per_mm[1] * extent_mm / layout.spacing_row_mm,
    )
    widen = [math.ceil(abs(d) - 1e-6) if layout.sheared else 0 for d in drift]
    start = [-w if d < 0 else 0 for w, d in zip(widen, drift, strict=True)]
    origin = (
        layout.first_position_lps
        + start[0] * layout.spacing_col_mm * layout.row_dir
        + start[1] * layout.spacing_row_mm * layout.col_dir
    )
    return OutputGrid(
        origin_lps=origin,
        axes=np.stack([layout.row_dir, layout.col_dir, layout.normal]),
        spacing_mm=(layout.spacing_col_mm, layout.spacing_row_mm, step_mm),
        size=(columns + widen[0], rows + widen[1], slices),
        first_index=(-start[0], -start[1]),
    )
