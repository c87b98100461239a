"""Axial, coronal and sagittal slice images of a CT volume as PNG, and the mapping between slice
pixels and patient LPS points (the web client's linked 3D cursor).

Slices are planes of the volume's own voxel grid: no resampling across slices. Each anatomical
plane takes the voxel axis closest to its normal (the permutation of voxel axes that best matches
L, P, S in the direction matrix). For an axial acquisition these are the usual planes; a sagittal
or coronal acquisition shows true anatomical planes too (its voxel axes are just permuted); an
oblique one shows the voxel planes nearest to them, tilted by the obliquity. Images follow the
radiological conventions, whatever the direction matrix's signs:
- axial: patient's right on image left, anterior at the top;
- coronal: patient's right on image left, head at the top;
- sagittal: anterior on image left, head at the top.
Pixels are square: the coarser in-plane axis is resampled (bilinear) to the finer spacing. Pixel
coordinates are (column, row) with integer values at pixel centres.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from io import BytesIO
from typing import Literal

import numpy as np
import SimpleITK as sitk
from PIL import Image

Plane = Literal["axial", "coronal", "sagittal"]
PLANES: tuple[Plane, ...] = ("axial", "coronal", "sagittal")
MAX_SIDE_PX = 2048  # a 5000-slice volume's sagittal image is scaled down to this
# per plane: the LPS axis it fixes; the LPS axis and sign that image columns and rows (downwards) follow
_PLANE_AXES: dict[str, tuple[int, tuple[int, int], tuple[int, int]]] = {
    "axial": (2, (0, +1), (1, +1)),  # columns to the patient's left, rows to posterior
    "coronal": (1, (0, +1), (2, -1)),  # columns to the left, rows to inferior
    "sagittal": (0, (1, +1), (2, -1)),  # columns to posterior, rows to inferior
}


class SliceError(ValueError):
    """Unknown plane, index outside the volume, or a bad window."""


@dataclass(frozen=True)
class Window:
    width_hu: float
    level_hu: float

    def __post_init__(self) -> None:
        if not self.width_hu > 0:
            raise SliceError(f"window width must be > 0 HU, got {self.width_hu}")


WINDOW_PRESETS: dict[str, Window] = {
    "bone": Window(2000.0, 500.0),
    "bone_narrow": Window(1800.0, 400.0),
    "soft_tissue": Window(400.0, 40.0),
    "lung": Window(1500.0, -600.0),
}


def window(preset_or_window: str | Window) -> Window:
    if isinstance(preset_or_window, Window):
        return preset_or_window
    if preset_or_window not in WINDOW_PRESETS:
        raise SliceError(f"unknown window preset {preset_or_window!r}; known: {sorted(WINDOW_PRESETS)}")
    return WINDOW_PRESETS[preset_or_window]


@dataclass(frozen=True)
class VolumeGeometry:
    """What the pixel↔LPS mapping needs, without the voxels. Tuples are x,y,z (SimpleITK order);
    `direction` is row-major 3x3 whose columns are the voxel axes in LPS."""

    size_xyz: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_lps: tuple[float, float, float]
    direction: tuple[float, ...]

    @classmethod
    def from_image(cls, image: sitk.Image) -> VolumeGeometry:
        if image.GetDimension() != 3:
            raise SliceError(f"need a 3D volume, got {image.GetDimension()}D")
        return cls(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())

    def index_to_lps(self, index_xyz: np.ndarray) -> np.ndarray:
        return np.asarray(self.origin_lps) + self.matrix() @ np.asarray(index_xyz, dtype=np.float64)

    def lps_to_index(self, point_lps: np.ndarray) -> np.ndarray:
        return np.linalg.solve(self.matrix(), np.asarray(point_lps, dtype=np.float64) - np.asarray(self.origin_lps))

    def matrix(self) -> np.ndarray:
        return np.array(self.direction, dtype=np.float64).reshape(3, 3) * np.asarray(self.spacing_mm)


@dataclass(frozen=True)
class SliceLayout:
    """How one plane's images are cut and drawn: voxel axes (0=x, 1=y, 2=z) and flips."""

    plane: Plane
    axis: int  # the voxel axis the plane fixes; slice indices run along it
    col_axis: int
    col_flip: bool
    row_axis: int
    row_flip: bool
    count: int  # number of slices
    width_px: int
    height_px: int
    pixel_mm: float


@dataclass(frozen=True)
class SlicePoint:
    plane: Plane
    index: int  # nearest slice
    col_px: float
    row_px: float
    inside: bool  # the point is within the volume
    distance_mm: float  # from the point to that slice's plane


def layout(geometry: VolumeGeometry, plane: Plane) -> SliceLayout:
    if plane not in _PLANE_AXES:
        raise SliceError(f"unknown plane {plane!r}; known: {PLANES}")
    voxel_axis, sign = _anatomical_axes(geometry)
    fixed, (col_lps, col_sign), (row_lps, row_sign) = _PLANE_AXES[plane]
    col_axis, row_axis = voxel_axis[col_lps], voxel_axis[row_lps]
    size, spacing = geometry.size_xyz, geometry.spacing_mm
    pixel_mm = min(spacing[col_axis], spacing[row_axis])
    width_mm, height_mm = size[col_axis] * spacing[col_axis], size[row_axis] * spacing[row_axis]
    pixel_mm = max(pixel_mm, max(width_mm, height_mm) / MAX_SIDE_PX)
    return SliceLayout(
        plane=plane,
        axis=voxel_axis[fixed],
        col_axis=col_axis,
        col_flip=sign[col_lps] != col_sign,
        row_axis=row_axis,
        row_flip=sign[row_lps] != row_sign,
        count=size[voxel_axis[fixed]],
        width_px=max(1, round(width_mm / pixel_mm)),
        height_px=max(1, round(height_mm / pixel_mm)),
        pixel_mm=pixel_mm,
    )


def _anatomical_axes(geometry: VolumeGeometry) -> tuple[list[int], list[int]]:
    """For LPS axis a: the voxel axis most parallel to it and the sign (+1 if the voxel index
    grows towards L, P or S)."""
    direction = np.array(geometry.direction, dtype=np.float64).reshape(3, 3)
    best = max(itertools.permutations(range(3)), key=lambda p: sum(abs(direction[a, p[a]]) for a in range(3)))
    return list(best), [1 if direction[a, best[a]] >= 0 else -1 for a in range(3)]


def slice_pixels(image: sitk.Image, plane: Plane, index: int, win: str | Window) -> np.ndarray:
    """The windowed slice as a uint8 (rows, columns) array with square pixels, oriented as above."""
    geometry = VolumeGeometry.from_image(image)
    lay = layout(geometry, plane)
    if not 0 <= index < lay.count:
        raise SliceError(f"{plane} slice {index} is outside 0..{lay.count - 1}")
    w = window(win)
    volume = sitk.GetArrayViewFromImage(image)  # z,y,x: numpy axis = 2 - voxel axis
    taken = np.take(volume, index, axis=2 - lay.axis)
    remaining = [a for a in (2, 1, 0) if a != lay.axis]  # voxel axes of `taken`'s dimensions
    if remaining.index(lay.row_axis) != 0:
        taken = taken.T
    if lay.row_flip:
        taken = taken[::-1]
    if lay.col_flip:
        taken = taken[:, ::-1]
    low = w.level_hu - w.width_hu / 2.0
    scaled = (taken.astype(np.float32) - np.float32(low)) * np.float32(255.0 / w.width_hu)
    pixels = np.clip(scaled + 0.5, 0, 255).astype(np.uint8)
    if pixels.shape != (lay.height_px, lay.width_px):
        resized = Image.fromarray(pixels).resize((lay.width_px, lay.height_px), Image.Resampling.BILINEAR)
        pixels = np.asarray(resized)
    return pixels


def render_png(image: sitk.Image, plane: Plane, index: int, win: str | Window) -> bytes:
    out = BytesIO()
    Image.fromarray(slice_pixels(image, plane, index, win)).save(out, format="PNG", compress_level=3)
    return out.getvalue()


def pixel_to_lps(geometry: VolumeGeometry, plane: Plane, index: float, col_px: float, row_px: float) -> np.ndarray:
    """The LPS point (mm) at a slice image pixel (centres at whole numbers)."""
    lay = layout(geometry, plane)
    ijk = np.zeros(3)
    ijk[lay.axis] = index
    ijk[lay.col_axis] = _image_to_voxel(col_px, geometry.size_xyz[lay.col_axis], lay.width_px, lay.col_flip)
    ijk[lay.row_axis] = _image_to_voxel(row_px, geometry.size_xyz[lay.row_axis], lay.height_px, lay.row_flip)
    return geometry.index_to_lps(ijk)


def lps_to_slice(geometry: VolumeGeometry, plane: Plane, point_lps: np.ndarray) -> SlicePoint:
    """The slice of `plane` nearest to an LPS point and the point's pixel in its image."""
    lay = layout(geometry, plane)
    ijk = geometry.lps_to_index(point_lps)
    index = round(float(ijk[lay.axis]))
    size = geometry.size_xyz
    inside = all(-0.5 <= ijk[a] <= size[a] - 0.5 for a in range(3))
    spacing = geometry.spacing_mm[lay.axis]
    return SlicePoint(
        plane=plane,
        index=int(min(max(index, 0), lay.count - 1)),
        col_px=_voxel_to_image(float(ijk[lay.col_axis]), size[lay.col_axis], lay.width_px, lay.col_flip),
        row_px=_voxel_to_image(float(ijk[lay.row_axis]), size[lay.row_axis], lay.height_px, lay.row_flip),
        inside=inside,
        distance_mm=abs(float(ijk[lay.axis]) - index) * spacing,
    )


def locate(geometry: VolumeGeometry, point_lps: np.ndarray) -> dict[Plane, SlicePoint]:
    """The three slices through an LPS point (the 3D cursor), with its pixel in each."""
    return {plane: lps_to_slice(geometry, plane, point_lps) for plane in PLANES}


def _image_to_voxel(px: float, voxels: int, pixels: int, flip: bool) -> float:
    # PIL maps pixel centres: source = (dest + 0.5) * voxels / pixels - 0.5
    shown = (px + 0.5) * voxels / pixels - 0.5
    return (voxels - 1) - shown if flip else shown


def _voxel_to_image(voxel: float, voxels: int, pixels: int, flip: bool) -> float:
    shown = (voxels - 1) - voxel if flip else voxel
    return (shown + 0.5) * pixels / voxels - 0.5


class SliceCache:
    """PNG slices, least recently used out first, within `max_bytes` of PNG data. Thread-safe."""

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple[str, str, int, Window], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def png(self, volume_id: str, image: sitk.Image, plane: Plane, index: int, win: str | Window) -> bytes:
        key = (volume_id, plane, index, window(win))
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return found
            self.misses += 1
        data = render_png(image, plane, index, key[3])  # outside the lock: renders run in parallel
        with self._lock:
            if key not in self._items and len(data) <= self.max_bytes:
                self._items[key] = data
                self.bytes += len(data)
                while self.bytes > self.max_bytes:
                    _, dropped = self._items.popitem(last=False)
                    self.bytes -= len(dropped)
        return data

    def forget(self, volume_id: str) -> None:
        """Drop every slice of a volume (deleted or replaced)."""
        with self._lock:
            for key in [k for k in self._items if k[0] == volume_id]:
                self.bytes -= len(self._items.pop(key))

    def __len__(self) -> int:
        return len(self._items)
