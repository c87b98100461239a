"""Synthetic CT series written as DICOM with pydicom, sampling the analytic phantoms of phantom_shapes.py.

API (other test modules import these; the shapes and Grid are re-exported from here):

write_series(folder, phantom=default_phantom(), grid=Grid(), *, transfer_syntax, shuffle_seed,
             missing_slices, rescale_slope, rescale_intercept, signed, multiframe, add_localizer,
             add_secondary_capture, add_truncated, add_non_dicom, series_description, series_number,
             patient, study_uid, series_uid, supersample)
    -> WrittenSeries(paths, series_uid, sop_uids (in slice order), grid, phantom, extra_paths)
    transfer_syntax: Explicit/Implicit VR Little Endian, RLE Lossless (pydicom encoder), JPEG 2000
    Lossless (pylibjpeg-openjpeg; needs 32+ pixels a side), JPEG Lossless SV1 and JPEG-LS Lossless
    (transcoded with GDCM). multiframe writes one Enhanced CT Image Storage file (functional groups).
    extra_paths: "localizer" (coronal scout, same series), "secondary_capture" (DERIVED\\SECONDARY SC,
    same series), "truncated" (first slice cut in half), "non_dicom" (a text file).
slice_dataset(grid, k, hu, ...) -> pydicom Dataset of one slice (for tests that edit headers)
FAKE_PATIENT: the fake PHI written into every header (name, ID, birth date, institution, referring
    physician, accession, a private tag under creator PRIVATE_CREATOR at (0x0009, 0x1001)), for
    de-identification tests.
deeply_nested_bytes(depth, *, undefined_length) / huge_declared_bytes(rows, columns, frames): hostile
    files as bytes (defined in hostile_dicom.py).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
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

from tests.support.dicom_headers import (  # re-exported
    CT_IMAGE_STORAGE,
    ENHANCED_CT_IMAGE_STORAGE,
    FAKE_PATIENT,
    PRIVATE_CREATOR,
    SECONDARY_CAPTURE_STORAGE,
    base_dataset,
)
from tests.support.hostile_dicom import deeply_nested_bytes, huge_declared_bytes  # re-exported
from tests.support.phantom_shapes import (  # re-exported: the phantom API lives in one import
    CtPhantom,
    Cylinder,
    Ellipsoid,
    Grid,
    Point,
    Shape,
    Sphere,
    default_phantom,
)


@dataclass
class WrittenSeries:
    paths: list[Path]  # volume files, in written (possibly shuffled) order
    series_uid: str
    sop_uids: list[str]  # volume slices in slice order (missing slices left out)
    grid: Grid
    phantom: CtPhantom
    extra_paths: dict[str, Path] = field(default_factory=dict)  # localizer, secondary_capture, truncated, ...


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
    ds = base_dataset(CT_IMAGE_STORAGE, patient, study_uid or generate_uid(), series_uid or generate_uid())
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
    ds = base_dataset(ENHANCED_CT_IMAGE_STORAGE, patient, study_uid, series_uid)
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
    ds = base_dataset(SECONDARY_CAPTURE_STORAGE, base["patient"], base["study_uid"], base["series_uid"])  # type: ignore[arg-type]
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


__all__ = [
    "CT_IMAGE_STORAGE",
    "ENHANCED_CT_IMAGE_STORAGE",
    "FAKE_PATIENT",
    "PRIVATE_CREATOR",
    "SECONDARY_CAPTURE_STORAGE",
    "CtPhantom",
    "Cylinder",
    "Ellipsoid",
    "Grid",
    "Point",
    "Shape",
    "Sphere",
    "WrittenSeries",
    "deeply_nested_bytes",
    "default_phantom",
    "huge_declared_bytes",
    "slice_dataset",
    "write_series",
]
