"""Does a part's bounding box fit a build volume, and turned how far about Z.

`box_orientations` gives a box's three distinct orientations (each axis up once); `fit_box` finds the turn
about Z at which one fits the bed (0, else 90, else the angle with the most room left, diagonally if need
be); `fit_job` the first of a job's candidate boxes that fits. Millimetres and degrees. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from server.printing.drivers.base import BuildVolume

Box = tuple[float, float, float]  # x, y, z extents in mm, z up (the build direction)

FIT_TOLERANCE_MM = 1e-6
_GRID_ANGLES_DEG = np.arange(0.0, 180.0, 0.5)  # rotations about Z tried when neither 0 nor 90 fits


def box_orientations(x_mm: float, y_mm: float, z_mm: float) -> tuple[Box, ...]:
    """A box's three distinct orientations up to a turn about Z (each axis up once)."""
    return ((x_mm, y_mm, z_mm), (x_mm, z_mm, y_mm), (y_mm, z_mm, x_mm))


def fit_angle_deg(points_xy: np.ndarray, bed_x_mm: float, bed_y_mm: float) -> float | None:
    """The turn about Z (degrees, counter-clockwise) at which these footprint points fit the bed:
    0 when they fit as they are, else 90, else the angle with the most room left; None if none does."""
    points = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    square = _slack(points, np.array([0.0, 90.0]), bed_x_mm, bed_y_mm)
    if (fitting := np.flatnonzero(square >= -FIT_TOLERANCE_MM)).size:
        return 90.0 * float(fitting[0])
    slack = _slack(points, _GRID_ANGLES_DEG, bed_x_mm, bed_y_mm)
    best = int(np.argmax(slack))
    return float(_GRID_ANGLES_DEG[best]) if slack[best] >= -FIT_TOLERANCE_MM else None


def _slack(points: np.ndarray, angles_deg: np.ndarray, bed_x_mm: float, bed_y_mm: float) -> np.ndarray:
    """Room left (mm, negative: too big) on the tighter bed axis, per angle."""
    rad = np.radians(angles_deg)[:, None]
    x = points[:, 0] * np.cos(rad) - points[:, 1] * np.sin(rad)
    y = points[:, 0] * np.sin(rad) + points[:, 1] * np.cos(rad)
    return np.minimum(bed_x_mm - np.ptp(x, axis=1), bed_y_mm - np.ptp(y, axis=1))


def fit_box(box: Box, volume: BuildVolume) -> float | None:
    """The turn about Z at which a box of these extents fits the build volume, or None."""
    x, y, z = box
    if z > volume.z_mm + FIT_TOLERANCE_MM:
        return None
    corners = np.array([[0.0, 0.0], [x, 0.0], [x, y], [0.0, y]])
    return fit_angle_deg(corners, volume.x_mm, volume.y_mm)


def fit_job(volume: BuildVolume, boxes: Iterable[Box]) -> tuple[int, float] | None:
    """The first of the candidate boxes that fits, and its turn about Z."""
    for index, box in enumerate(boxes):
        angle = fit_box(box, volume)
        if angle is not None:
            return index, angle
    return None


def smallest_box(boxes: Iterable[Box]) -> Box:
    return min(boxes, key=lambda b: (b[0] * b[1] * b[2], max(b)))
