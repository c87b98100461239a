"""Analytic CT phantoms: shapes at known patient LPS coordinates, and the slice grid that samples them.

Shapes (all coordinates LPS mm, HU values):
    Sphere(centre_lps, radius_mm, hu=1000)
    Cylinder(centre_lps, axis_lps, radius_mm, half_length_mm, hu=1000)   # capped, axis need not be unit
    Ellipsoid(centre_lps, semi_axes_mm, hu=1000)                          # axes along L, P, S
    each has .signed_distance_mm(points (N, 3)) -> (N,) (negative inside), .contains(points),
    .volume_mm3, .centre_lps

CtPhantom(shapes, body, background_hu=-1000, body_hu=0)
    .hu_at(points)               HU at LPS points (air, water body, bone shapes painted in order)
    .bone_signed_distance_mm(p)  signed distance to the union of the bone shapes (for surface tests:
                                 "every vertex within 1 mm of the analytic surface")
    .bone_volume_mm3, .bone_centroid_lps   analytic (bone shapes do not overlap)
default_phantom(centre_lps=...) -> CtPhantom   water cylinder along S with one bone sphere, one bone
                                               cylinder and one bone ellipsoid, >4 mm apart

Grid(rows, columns, pixel_spacing_mm=(row spacing, column spacing), slice_count, slice_step_mm,
     centre_lps, orientation="axial"|"coronal"|"sagittal"|IOP 6-tuple, gantry_tilt_deg, slice_offsets_mm)
    .row_dir/.col_dir/.normal/.step_dir, .positions_lps() (n, 3), .voxel_centres_lps(k) (rows, cols, 3),
    .slice_hu(phantom, k, supersample) partial-volume HU of slice k
    Gantry tilt rotates the image plane about the row direction while positions step along the untilted
    normal (as on a tilted CT gantry); slice_offsets_mm gives explicit, possibly uneven, positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Point = tuple[float, float, float]


def _points(points: np.ndarray) -> np.ndarray:
    return np.asarray(points, dtype=np.float64).reshape(-1, 3)


@dataclass(frozen=True)
class Sphere:
    centre_lps: Point
    radius_mm: float
    hu: float = 1000.0

    def signed_distance_mm(self, points: np.ndarray) -> np.ndarray:
        return np.linalg.norm(_points(points) - np.asarray(self.centre_lps), axis=1) - self.radius_mm

    def contains(self, points: np.ndarray) -> np.ndarray:
        return self.signed_distance_mm(points) <= 0

    @property
    def volume_mm3(self) -> float:
        return 4.0 / 3.0 * np.pi * self.radius_mm**3


@dataclass(frozen=True)
class Cylinder:
    centre_lps: Point
    axis_lps: Point
    radius_mm: float
    half_length_mm: float
    hu: float = 1000.0

    def signed_distance_mm(self, points: np.ndarray) -> np.ndarray:
        axis = np.asarray(self.axis_lps, dtype=np.float64)
        axis /= np.linalg.norm(axis)
        rel = _points(points) - np.asarray(self.centre_lps)
        along = rel @ axis
        radial = np.linalg.norm(rel - np.outer(along, axis), axis=1)
        # Exact distance to a capped cylinder (2D box distance in (radial, along)).
        d = np.stack([radial - self.radius_mm, np.abs(along) - self.half_length_mm], axis=1)
        outside = np.linalg.norm(np.maximum(d, 0.0), axis=1)
        return outside + np.minimum(np.max(d, axis=1), 0.0)

    def contains(self, points: np.ndarray) -> np.ndarray:
        return self.signed_distance_mm(points) <= 0

    @property
    def volume_mm3(self) -> float:
        return np.pi * self.radius_mm**2 * 2.0 * self.half_length_mm


@dataclass(frozen=True)
class Ellipsoid:
    centre_lps: Point
    semi_axes_mm: Point
    hu: float = 1000.0

    def signed_distance_mm(self, points: np.ndarray) -> np.ndarray:
        """Exact distance: bisection on the Lagrange parameter t of the closest point (Eberly)."""
        a = np.asarray(self.semi_axes_mm, dtype=np.float64)
        p = np.abs(_points(points) - np.asarray(self.centre_lps))
        p = np.maximum(p, 1e-9)  # keeps F(t) strictly monotonic on the medial planes
        a2 = a**2
        inside = np.sum((p / a) ** 2, axis=1) < 1.0
        lo = np.where(inside, -a2.min() + 1e-12, 0.0)
        hi = np.where(inside, 0.0, np.linalg.norm(p, axis=1) * a.max())
        for _ in range(80):
            t = 0.5 * (lo + hi)
            f = np.sum((a * p / (t[:, None] + a2)) ** 2, axis=1) - 1.0
            lo = np.where(f > 0, t, lo)
            hi = np.where(f > 0, hi, t)
        t = 0.5 * (lo + hi)
        closest = a2 * p / (t[:, None] + a2)
        dist = np.linalg.norm(p - closest, axis=1)
        return np.where(inside, -dist, dist)

    def contains(self, points: np.ndarray) -> np.ndarray:
        rel = _points(points) - np.asarray(self.centre_lps)
        return np.sum((rel / np.asarray(self.semi_axes_mm)) ** 2, axis=1) <= 1.0

    @property
    def volume_mm3(self) -> float:
        return 4.0 / 3.0 * np.pi * float(np.prod(self.semi_axes_mm))


Shape = Sphere | Cylinder | Ellipsoid


@dataclass(frozen=True)
class CtPhantom:
    shapes: tuple[Shape, ...]
    body: Shape | None = None
    background_hu: float = -1000.0
    body_hu: float = 0.0

    def hu_at(self, points: np.ndarray) -> np.ndarray:
        pts = _points(points)
        hu = np.full(len(pts), self.background_hu)
        if self.body is not None:
            hu[self.body.contains(pts)] = self.body_hu
        for shape in self.shapes:
            hu[shape.contains(pts)] = shape.hu
        return hu

    def bone_signed_distance_mm(self, points: np.ndarray) -> np.ndarray:
        return np.min([s.signed_distance_mm(points) for s in self.shapes], axis=0)

    @property
    def bone_volume_mm3(self) -> float:
        return float(sum(s.volume_mm3 for s in self.shapes))

    @property
    def bone_centroid_lps(self) -> np.ndarray:
        weights = np.array([s.volume_mm3 for s in self.shapes])
        centres = np.array([s.centre_lps for s in self.shapes], dtype=np.float64)
        return (weights[:, None] * centres).sum(axis=0) / weights.sum()


def default_phantom(centre_lps: Point = (12.0, -30.0, 105.0)) -> CtPhantom:
    c = np.asarray(centre_lps, dtype=np.float64)

    def at(dx: float, dy: float, dz: float) -> Point:
        return (float(c[0] + dx), float(c[1] + dy), float(c[2] + dz))

    return CtPhantom(
        shapes=(
            Sphere(at(4.0, -3.0, 2.0), 7.0),
            Cylinder(at(-9.0, 8.0, -4.0), (1.0, 1.0, 2.0), 2.5, 6.0),
            Ellipsoid(at(-8.0, -8.0, 9.0), (4.0, 3.0, 2.5)),
        ),
        body=Cylinder(tuple(c), (0.0, 0.0, 1.0), 21.0, 40.0),  # type: ignore[arg-type]
    )


_NAMED_IOP: dict[str, tuple[float, ...]] = {
    "axial": (1, 0, 0, 0, 1, 0),
    "coronal": (1, 0, 0, 0, 0, -1),
    "sagittal": (0, 1, 0, 0, 0, -1),
}


@dataclass(frozen=True)
class Grid:
    rows: int = 48
    columns: int = 64
    pixel_spacing_mm: tuple[float, float] = (1.0, 0.8)  # (row spacing Δr, column spacing Δc), as in DICOM
    slice_count: int = 40
    slice_step_mm: float = 1.5
    centre_lps: Point = (12.0, -30.0, 105.0)
    orientation: str | tuple[float, ...] = "axial"
    gantry_tilt_deg: float = 0.0
    slice_offsets_mm: tuple[float, ...] | None = None  # explicit offsets along step_dir (uneven spacing)

    def _untilted(self) -> tuple[np.ndarray, np.ndarray]:
        iop = _NAMED_IOP[self.orientation] if isinstance(self.orientation, str) else self.orientation
        row = np.asarray(iop[:3], dtype=np.float64)
        row /= np.linalg.norm(row)
        col = np.asarray(iop[3:], dtype=np.float64)
        col -= (col @ row) * row
        return row, col / np.linalg.norm(col)

    @property
    def row_dir(self) -> np.ndarray:
        return self._untilted()[0]

    @property
    def step_dir(self) -> np.ndarray:
        """Direction the slice positions step along (the table axis when tilted)."""
        row, col = self._untilted()
        return np.cross(row, col)

    @property
    def col_dir(self) -> np.ndarray:
        row, col = self._untilted()
        theta = np.deg2rad(self.gantry_tilt_deg)
        return np.cos(theta) * col - np.sin(theta) * np.cross(row, col)

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.col_dir)

    @property
    def iop(self) -> list[float]:
        return [float(v) for v in (*self.row_dir, *self.col_dir)]

    def offsets_mm(self) -> np.ndarray:
        if self.slice_offsets_mm is not None:
            return np.asarray(self.slice_offsets_mm, dtype=np.float64)
        return np.arange(self.slice_count) * self.slice_step_mm

    def positions_lps(self) -> np.ndarray:
        """ImagePositionPatient of every slice (centre of the stack at centre_lps)."""
        offsets = self.offsets_mm()
        dr, dc = self.pixel_spacing_mm
        corner = (
            np.asarray(self.centre_lps)
            - self.row_dir * dc * (self.columns - 1) / 2
            - self.col_dir * dr * (self.rows - 1) / 2
        )
        mid = (offsets.min() + offsets.max()) / 2
        return corner + np.outer(offsets - mid, self.step_dir)

    def voxel_centres_lps(self, k: int, sub: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
        """(rows, columns, 3) LPS centres of slice k; sub shifts by fractions of a voxel (i, j, normal)."""
        dr, dc = self.pixel_spacing_mm
        i = np.arange(self.rows)[:, None, None] + sub[0]
        j = np.arange(self.columns)[None, :, None] + sub[1]
        return (
            self.positions_lps()[k]
            + j * dc * self.row_dir
            + i * dr * self.col_dir
            + sub[2] * self.slice_step_mm * self.normal
        )

    def slice_hu(self, phantom: CtPhantom, k: int, supersample: int = 2) -> np.ndarray:
        """Partial-volume HU of slice k: mean over supersample³ points inside each voxel."""
        steps = (np.arange(supersample) + 0.5) / supersample - 0.5
        acc = np.zeros((self.rows, self.columns))
        for si in steps:
            for sj in steps:
                for sk in steps:
                    pts = self.voxel_centres_lps(k, (si, sj, sk))
                    acc += phantom.hu_at(pts.reshape(-1, 3)).reshape(self.rows, self.columns)
        return acc / supersample**3
