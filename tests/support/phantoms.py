"""Synthetic CT phantoms written as DICOM with pydicom: shapes with analytic geometry in patient LPS mm.

API (other test modules import these):

Shapes (all coordinates LPS mm, HU values):
    Sphere(centre_lps, radius_mm, hu=1000)
    Cylinder(centre_lps, axis_lps, radius_mm, half_length_mm, hu=1000)   # capped, axis need not be unit
    Ellipsoid(centre_lps, semi_axes_mm, hu=1000)                          # axes along L, P, S
    each has .signed_distance_mm(points (N, 3)) -> (N,) (negative inside), .contains(points), .volume_mm3,
    .centre_lps

CtPhantom(shapes, body, background_hu=-1000, body_hu=0)
    .hu_at(points)               HU at LPS points (air, water body, bone shapes painted in order)
    .bone_signed_distance_mm(p)  signed distance to the union of the bone shapes (for surface tests:
                                 "every vertex within 1 mm of the analytic surface")
    .bone_volume_mm3, .bone_centroid_lps   analytic (bone shapes must not overlap)
default_phantom(centre_lps=...) -> CtPhantom   water cylinder along S with one bone sphere, one bone
                                               cylinder and one bone ellipsoid, not overlapping

Grid(rows, columns, pixel_spacing_mm=(row Δr, column Δc), slice_count, slice_step_mm, centre_lps,
     orientation="axial"|"coronal"|"sagittal"|IOP 6-tuple, gantry_tilt_deg, slice_offsets_mm)
    .row_dir/.col_dir/.normal/.step_dir, .positions_lps() (n, 3), .voxel_centres_lps(k) (rows, cols, 3)
    Gantry tilt rotates the image plane about the row direction while positions step along the untilted
    normal (as on a tilted CT gantry); slice_offsets_mm gives explicit, possibly uneven, positions.

write_series(folder, phantom, grid, *, transfer_syntax, shuffle_seed, missing_slices, rescale_slope,
             rescale_intercept, multiframe, add_localizer, add_secondary_capture, add_truncated,
             add_non_dicom, series_description, series_number, patient, study_uid, series_uid)
    -> WrittenSeries(paths, extra_paths, series_uid, sop_uids (in slice order), grid, phantom)
    transfer_syntax: Explicit/Implicit VR Little Endian, RLE Lossless (pydicom encoder), JPEG 2000
    Lossless (pylibjpeg-openjpeg; needs 32+ pixels a side), JPEG Lossless SV1 and JPEG-LS Lossless
    (transcoded with GDCM).
slice_dataset(...) -> pydicom Dataset of one slice (for tests that edit headers before writing)
FAKE_PATIENT: the fake PHI written into every header (name, ID, birth date, institution, a private
    tag under creator PRIVATE_CREATOR at (0x0009, 0x10xx)), for de-identification tests.
deeply_nested_bytes(depth) / huge_declared_bytes(rows, columns): hostile files as bytes.
"""

from __future__ import annotations

import io
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
PRIVATE_CREATOR = "TRINITY PHANTOM"
FAKE_PATIENT: dict[str, str] = {
    "PatientName": "Doe^Jane^Q",
    "PatientID": "PHANTOM-4711",
    "PatientBirthDate": "19700402",
    "PatientSex": "F",
    "InstitutionName": "St. Example Hospital",
    "ReferringPhysicianName": "House^Gregory",
    "AccessionNumber": "ACC-0042",
    "StudyDate": "20240115",
    "StudyTime": "101500",
    "PrivateNote": "jane.doe@example.org lives at 1 Secret Lane",
}
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


@dataclass
class WrittenSeries:
    paths: list[Path]  # volume files, in written (possibly shuffled) order
    series_uid: str
    sop_uids: list[str]  # volume slices in slice order (missing slices left out)
    grid: Grid
    phantom: CtPhantom
    extra_paths: dict[str, Path] = field(default_factory=dict)  # localizer, secondary_capture, truncated, ...


def _base_dataset(sop_class: str, patient: dict[str, str], study_uid: str, series_uid: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    sop_uid = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = UID(sop_class)
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "CT"
    for key in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "InstitutionName"):
        setattr(ds, key, patient[key])
    for key in ("ReferringPhysicianName", "AccessionNumber", "StudyDate", "StudyTime"):
        setattr(ds, key, patient[key])
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = generate_uid()
    ds.StudyID = "1"
    ds.Manufacturer = "Trinity phantom"
    ds.PatientPosition = "HFS"
    ds.private_block(0x0009, PRIVATE_CREATOR, create=True).add_new(0x01, "LO", patient["PrivateNote"])
    return ds


def _pixel_module(ds: Dataset, stored: np.ndarray, spacing_mm: Sequence[float]) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.PixelSpacing = [float(v) for v in spacing_mm]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
    ds.PixelData = stored.tobytes()


def _stored(hu: np.ndarray, slope: float, intercept: float, signed: bool) -> np.ndarray:
    raw = np.rint((hu - intercept) / slope)
    return raw.astype(np.int16) if signed else np.clip(raw, 0, 65535).astype(np.uint16)


def slice_dataset(
    grid: Grid,
    k: int,
    hu: np.ndarray,
    *,
    rescale_slope: float = 1.0,
    rescale_intercept: float = -1024.0,
    signed: bool = False,
    patient: dict[str, str] = FAKE_PATIENT,
    study_uid: str | None = None,
    series_uid: str | None = None,
    series_number: int = 3,
    series_description: str = "Phantom CT",
    instance_number: int | None = None,
) -> Dataset:
    ds = _base_dataset(CT_IMAGE_STORAGE, patient, study_uid or generate_uid(), series_uid or generate_uid())
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.InstanceNumber = k + 1 if instance_number is None else instance_number
    ds.ImagePositionPatient = [round(float(v), 6) for v in grid.positions_lps()[k]]
    ds.ImageOrientationPatient = [round(v, 8) for v in grid.iop]
    ds.SliceThickness = grid.slice_step_mm
    ds.GantryDetectorTilt = grid.gantry_tilt_deg
    ds.KVP = 120
    ds.RescaleSlope = rescale_slope
    ds.RescaleIntercept = rescale_intercept
    ds.RescaleType = "HU"
    _pixel_module(ds, _stored(hu, rescale_slope, rescale_intercept, signed), grid.pixel_spacing_mm)
    return ds


def _encode(ds: Dataset, path: Path, transfer_syntax: str) -> None:
    if transfer_syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
        ds.save_as(path, enforce_file_format=True)
    elif transfer_syntax in (RLELossless, JPEG2000Lossless):
        plugin = "pylibjpeg" if transfer_syntax == JPEG2000Lossless else ""
        ds.compress(UID(transfer_syntax), encoding_plugin=plugin, generate_instance_uid=False)
        ds.save_as(path, enforce_file_format=True)
    elif transfer_syntax in (JPEGLosslessSV1, JPEGLSLossless):
        ds.save_as(path, enforce_file_format=True)
        _transcode_with_gdcm(path, transfer_syntax)
    else:
        raise ValueError(f"phantom writer cannot encode transfer syntax {transfer_syntax}")


def _transcode_with_gdcm(path: Path, transfer_syntax: str) -> None:
    import gdcm  # only the phantom writer needs it: pydicom has no JPEG Lossless encoder

    kinds = {
        JPEGLosslessSV1: gdcm.TransferSyntax.JPEGLosslessProcess14_1,
        JPEGLSLossless: gdcm.TransferSyntax.JPEGLSLossless,
    }
    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    if not reader.Read():
        raise RuntimeError(f"GDCM could not read {path}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(kinds[transfer_syntax]))
    change.SetInput(reader.GetImage())
    if not change.Change():
        raise RuntimeError(f"GDCM could not encode {path} as {transfer_syntax}")
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(path))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
        raise RuntimeError(f"GDCM could not write {path}")


def _enhanced_ct(
    grid: Grid,
    slices_hu: list[np.ndarray],
    ks: list[int],
    slope: float,
    intercept: float,
    signed: bool,
    patient: dict[str, str],
    study_uid: str,
    series_uid: str,
    description: str,
) -> Dataset:
    ds = _base_dataset(ENHANCED_CT_IMAGE_STORAGE, patient, study_uid, series_uid)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.SeriesNumber = 3
    ds.SeriesDescription = description
    ds.InstanceNumber = 1
    ds.NumberOfFrames = len(ks)
    stored = np.stack([_stored(h, slope, intercept, signed) for h in slices_hu])
    _pixel_module(ds, stored, grid.pixel_spacing_mm)
    del ds.PixelSpacing  # lives in the functional groups for enhanced objects
    measures = Dataset()
    measures.PixelSpacing = [float(v) for v in grid.pixel_spacing_mm]
    measures.SliceThickness = grid.slice_step_mm
    orientation = Dataset()
    orientation.ImageOrientationPatient = [round(v, 8) for v in grid.iop]
    transform = Dataset()
    transform.RescaleSlope = slope
    transform.RescaleIntercept = intercept
    transform.RescaleType = "HU"
    shared = Dataset()
    shared.PixelMeasuresSequence = DicomSequence([measures])
    shared.PlaneOrientationSequence = DicomSequence([orientation])
    shared.PixelValueTransformationSequence = DicomSequence([transform])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    frames = []
    for n, k in enumerate(ks):
        position = Dataset()
        position.ImagePositionPatient = [round(float(v), 6) for v in grid.positions_lps()[k]]
        content = Dataset()
        content.InStackPositionNumber = n + 1
        frame = Dataset()
        frame.PlanePositionSequence = DicomSequence([position])
        frame.FrameContentSequence = DicomSequence([content])
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(frames)
    return ds


def _localizer(grid: Grid, phantom: CtPhantom, base: dict[str, object]) -> Dataset:
    """A coronal scout in the same series: different orientation and matrix, ImageType LOCALIZER."""
    scout = Grid(
        rows=40,
        columns=56,
        pixel_spacing_mm=(1.5, 1.0),
        slice_count=1,
        centre_lps=grid.centre_lps,
        orientation="coronal",
    )
    ds = slice_dataset(scout, 0, scout.slice_hu(phantom, 0, supersample=1), **base)  # type: ignore[arg-type]
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.InstanceNumber = 0
    return ds


def _secondary_capture(base: dict[str, object]) -> Dataset:
    """A DERIVED\\SECONDARY screenshot carrying the series UID (as some viewers save them)."""
    ds = _base_dataset(SECONDARY_CAPTURE_STORAGE, base["patient"], base["study_uid"], base["series_uid"])  # type: ignore[arg-type]
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.Modality = "OT"
    ds.SeriesNumber = base["series_number"]
    ds.InstanceNumber = 999
    _pixel_module(ds, np.zeros((32, 32), dtype=np.uint16), (1.0, 1.0))
    return ds


def write_series(
    folder: Path,
    phantom: CtPhantom | None = None,
    grid: Grid | None = None,
    *,
    transfer_syntax: str = ExplicitVRLittleEndian,
    shuffle_seed: int | None = None,
    missing_slices: Sequence[int] = (),
    rescale_slope: float = 1.0,
    rescale_intercept: float = -1024.0,
    signed: bool = False,
    multiframe: bool = False,
    add_localizer: bool = False,
    add_secondary_capture: bool = False,
    add_truncated: bool = False,
    add_non_dicom: bool = False,
    series_description: str = "Phantom CT",
    series_number: int = 3,
    patient: dict[str, str] = FAKE_PATIENT,
    study_uid: str | None = None,
    series_uid: str | None = None,
    supersample: int = 2,
) -> WrittenSeries:
    """Write the phantom sampled on the grid as a CT series into folder (created if needed)."""
    phantom = phantom or default_phantom(grid.centre_lps if grid else Grid().centre_lps)
    grid = grid or Grid()
    folder.mkdir(parents=True, exist_ok=True)
    base: dict[str, object] = {
        "rescale_slope": rescale_slope,
        "rescale_intercept": rescale_intercept,
        "signed": signed,
        "patient": patient,
        "study_uid": study_uid or generate_uid(),
        "series_uid": series_uid or generate_uid(),
        "series_number": series_number,
        "series_description": series_description,
    }
    ks = [k for k in range(len(grid.offsets_mm())) if k not in set(missing_slices)]
    hus = [grid.slice_hu(phantom, k, supersample) for k in ks]
    datasets: list[Dataset]
    if multiframe:
        datasets = [
            _enhanced_ct(
                grid,
                hus,
                ks,
                rescale_slope,
                rescale_intercept,
                signed,
                patient,
                str(base["study_uid"]),
                str(base["series_uid"]),
                series_description,
            )
        ]
    else:
        datasets = [slice_dataset(grid, k, hu, **base) for k, hu in zip(ks, hus, strict=True)]  # type: ignore[arg-type]
    sop_uids = [str(ds.SOPInstanceUID) for ds in datasets]
    order = list(range(len(datasets)))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(order)
    paths = []
    for n, index in enumerate(order):
        path = folder / f"IM{n:04d}.dcm"
        _encode(datasets[index], path, transfer_syntax)
        paths.append(path)
    written = WrittenSeries(paths, str(base["series_uid"]), sop_uids, grid, phantom)
    if add_localizer:
        written.extra_paths["localizer"] = folder / "SCOUT.dcm"
        _localizer(grid, phantom, base).save_as(written.extra_paths["localizer"], enforce_file_format=True)
    if add_secondary_capture:
        written.extra_paths["secondary_capture"] = folder / "SCREENSHOT.dcm"
        _secondary_capture(base).save_as(written.extra_paths["secondary_capture"], enforce_file_format=True)
    if add_truncated:
        written.extra_paths["truncated"] = folder / "TRUNCATED.dcm"
        data = paths[0].read_bytes()
        written.extra_paths["truncated"].write_bytes(data[: len(data) // 2])
    if add_non_dicom:
        written.extra_paths["non_dicom"] = folder / "README.txt"
        written.extra_paths["non_dicom"].write_text("not a DICOM file; the scanner's export notes\n")
    return written


def deeply_nested_bytes(depth: int = 5000, *, undefined_length: bool = True) -> bytes:
    """A small file whose ContentSequence nests `depth` levels deep, built iteratively as raw bytes.

    With undefined lengths pydicom must recurse through every level while reading (RecursionError);
    with defined lengths it parses lazily and recursion happens when the nested items are used.
    """
    ds = _base_dataset(CT_IMAGE_STORAGE, FAKE_PATIENT, generate_uid(), generate_uid())
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)  # explicit VR little endian
    leaf = struct.pack("<HH2sH", 0x0008, 0x0100, b"SH", 2) + b"X "  # CodeValue
    sq_head = struct.pack("<HH2sH", 0x0040, 0xA730, b"SQ", 0)
    if undefined_length:
        opening = sq_head + struct.pack("<I", 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
        closing = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        return buffer.getvalue() + opening * depth + leaf + closing * depth
    body = leaf
    for _ in range(depth):  # defined lengths: build from the inside out
        item = struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body
        body = sq_head + struct.pack("<I", len(item)) + item
    return buffer.getvalue() + body


def huge_declared_bytes(rows: int = 65535, columns: int = 65535, frames: int = 1) -> bytes:
    """A few-KB file declaring rowsxcolumnsxframes 16-bit pixels with only a few bytes of PixelData."""
    ds = _base_dataset(CT_IMAGE_STORAGE, FAKE_PATIENT, generate_uid(), generate_uid())
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = b"\x00" * 64
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def read_back(path: Path) -> Dataset:
    """dcmread, for tests that edit a written slice."""
    return pydicom.dcmread(path)
