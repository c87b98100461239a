"""read_dicom: one file in, a decoded DicomFile or a FileProblem with a stable code and a reason out."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from server.imaging.dicom_files import DicomFile, FileProblem, Limits, ProblemCode, read_dicom
from tests.support.phantoms import (
    CT_IMAGE_STORAGE,
    PRIVATE_CREATOR,
    Grid,
    deeply_nested_bytes,
    huge_declared_bytes,
    slice_dataset,
    write_series,
)

LIMITS = Limits()
SMALL = Grid(rows=32, columns=40, slice_count=3)  # JPEG 2000 (6 resolutions) needs 32+ pixels a side


def _bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _problem(result: DicomFile | FileProblem) -> FileProblem:
    assert isinstance(result, FileProblem), f"expected a problem, got a decoded file {result.name}"
    assert result.reason.strip(), "every problem says why"
    return result


def _slice(**changes: object) -> Dataset:
    ds = slice_dataset(SMALL, 0, np.zeros((SMALL.rows, SMALL.columns)))
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    "transfer_syntax",
    [ImplicitVRLittleEndian, RLELossless, JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless],
)
def test_compressed_and_implicit_slices_decode_to_the_explicit_pixels(tmp_path: Path, transfer_syntax: str) -> None:
    plain = write_series(tmp_path / "plain", grid=SMALL, supersample=1, signed=True)
    packed = write_series(tmp_path / "packed", grid=SMALL, supersample=1, signed=True, transfer_syntax=transfer_syntax)
    for a, b in zip(plain.paths, packed.paths, strict=True):
        left, right = read_dicom(a, a.name, limits=LIMITS), read_dicom(b, b.name, limits=LIMITS)
        assert isinstance(left, DicomFile) and isinstance(right, DicomFile)
        assert right.transfer_syntax_uid == transfer_syntax
        assert np.array_equal(left.pixels, right.pixels)
        assert left.planes == right.planes


def test_path_and_bytes_read_alike(tmp_path: Path) -> None:
    path = write_series(tmp_path, grid=SMALL, supersample=1).paths[0]
    from_path = read_dicom(path, "a", limits=LIMITS)
    from_bytes = read_dicom(path.read_bytes(), "a", limits=LIMITS)
    assert isinstance(from_path, DicomFile) and isinstance(from_bytes, DicomFile)
    assert np.array_equal(from_path.pixels, from_bytes.pixels)
    assert from_path.planes == from_bytes.planes


@pytest.mark.parametrize(
    "data", [b"", b"hello, not an image\n", bytes(range(256)) * 8, b"\x89PNG\r\n\x1a\n" + b"\0" * 200]
)
def test_non_dicom_bytes_are_not_dicom(data: bytes) -> None:
    assert _problem(read_dicom(data, "x", limits=LIMITS)).code == ProblemCode.NOT_DICOM


def test_a_directory_is_unreadable(tmp_path: Path) -> None:
    assert _problem(read_dicom(tmp_path, "folder", limits=LIMITS)).code == ProblemCode.UNREADABLE


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.8, 0.99])
def test_files_cut_short_are_truncated(tmp_path: Path, fraction: float) -> None:
    data = write_series(tmp_path, grid=SMALL, supersample=1).paths[0].read_bytes()
    cut = data[: int(len(data) * fraction)]
    assert _problem(read_dicom(cut, "cut", limits=LIMITS)).code == ProblemCode.TRUNCATED


def test_every_cut_of_a_compressed_file_is_refused_without_an_exception(tmp_path: Path) -> None:
    data = write_series(tmp_path, grid=SMALL, supersample=1, transfer_syntax=RLELossless).paths[0].read_bytes()
    codes = {_problem(read_dicom(data[:cut], "cut", limits=LIMITS)).code for cut in range(0, len(data) - 1, 97)}
    assert codes <= {ProblemCode.NOT_DICOM, ProblemCode.TRUNCATED, ProblemCode.PIXEL_DECODE_FAILED}


def test_65535_square_matrix_in_a_few_bytes_is_too_large_before_decoding() -> None:
    data = huge_declared_bytes(65535, 65535)
    assert len(data) < 4096
    problem = _problem(read_dicom(data, "huge", limits=LIMITS))
    # Decoding 64 bytes as 65535x65535 pixels would fail as truncated or undecodable: too_large proves the
    # declared size was checked first.
    assert problem.code == ProblemCode.TOO_LARGE
    assert "65535x65535" in problem.reason


def test_too_many_frames_is_too_large() -> None:
    problem = _problem(read_dicom(huge_declared_bytes(16, 16, frames=5000), "frames", limits=Limits(max_frames=1000)))
    assert problem.code == ProblemCode.TOO_LARGE and "5000 frames" in problem.reason


@pytest.mark.parametrize("undefined_length", [True, False])
def test_deeply_nested_sequences_are_refused(undefined_length: bool) -> None:
    data = deeply_nested_bytes(5000, undefined_length=undefined_length)
    assert _problem(read_dicom(data, "nested", limits=LIMITS)).code == ProblemCode.NESTED_TOO_DEEP


def test_nesting_just_over_the_limit_is_refused_and_just_under_is_read() -> None:
    limits = Limits(max_nesting_depth=8)
    over = read_dicom(deeply_nested_bytes(9, undefined_length=False), "over", limits=limits)
    under = read_dicom(deeply_nested_bytes(8, undefined_length=False), "under", limits=limits)
    assert _problem(over).code == ProblemCode.NESTED_TOO_DEEP
    assert _problem(under).code == ProblemCode.NO_PIXEL_DATA  # read fine; it just holds no image


def test_twelve_bit_jpeg_extended_is_rejected_by_name() -> None:
    ds = pydicom.dcmread(get_testdata_file("JPGExtended.dcm"))
    ds.SOPClassUID = CT_IMAGE_STORAGE  # so it is judged as an image, not as a secondary capture
    problem = _problem(read_dicom(_bytes(ds), "jpeg12", limits=LIMITS))
    assert problem.code == ProblemCode.UNSUPPORTED_TRANSFER_SYNTAX
    assert "JPEG Extended" in problem.reason and "12-bit" in problem.reason
    assert "1.2.840.10008.1.2.4.51" in problem.reason


def test_unknown_transfer_syntax_is_rejected_by_uid(tmp_path: Path) -> None:
    data = write_series(tmp_path, grid=SMALL, supersample=1).paths[0].read_bytes()
    # Same length, so the meta header stays valid; pydicom cannot write an unknown syntax itself.
    odd = data.replace(b"1.2.840.10008.1.2.1\0", b"1.2.840.10008.9.9.9\0", 1)
    assert odd != data
    problem = _problem(read_dicom(odd, "odd", limits=LIMITS))
    assert problem.code == ProblemCode.UNSUPPORTED_TRANSFER_SYNTAX
    assert "1.2.840.10008.9.9.9" in problem.reason


def test_private_pixels_without_pixel_data_are_vendor_private_compression() -> None:
    ds = _slice()
    del ds.PixelData
    ds.private_block(0x7FE1, "VENDOR PRIVATE PIXELS", create=True).add_new(0x10, "OB", b"\x5a" * 65536)
    problem = _problem(read_dicom(_bytes(ds), "private", limits=LIMITS))
    assert problem.code == ProblemCode.VENDOR_PRIVATE_COMPRESSION
    assert "(7FE1,1010)" in problem.reason


def test_header_only_objects_have_no_pixel_data() -> None:
    ds = _slice()
    del ds.PixelData
    assert _problem(read_dicom(_bytes(ds), "header", limits=LIMITS)).code == ProblemCode.NO_PIXEL_DATA


def test_localizer_secondary_capture_and_screenshot_are_not_volume_slices(tmp_path: Path) -> None:
    written = write_series(tmp_path, grid=SMALL, supersample=1, add_localizer=True, add_secondary_capture=True)
    localizer = _problem(read_dicom(written.extra_paths["localizer"], "scout", limits=LIMITS))
    capture = _problem(read_dicom(written.extra_paths["secondary_capture"], "sc", limits=LIMITS))
    screenshot = _slice(ImageType=["DERIVED", "SECONDARY", "SCREEN SAVE"])
    del screenshot.ImagePositionPatient
    derived = _problem(read_dicom(_bytes(screenshot), "shot", limits=LIMITS))
    assert (localizer.code, capture.code, derived.code) == (
        ProblemCode.LOCALIZER,
        ProblemCode.SECONDARY_CAPTURE,
        ProblemCode.DERIVED_SECONDARY,
    )
    assert localizer.series_instance_uid == written.series_uid  # so the edge can file it under its series


def test_derived_reconstruction_with_geometry_is_kept() -> None:
    ds = _slice(ImageType=["DERIVED", "SECONDARY", "MPR"])
    assert isinstance(read_dicom(_bytes(ds), "mpr", limits=LIMITS), DicomFile)


def test_script_in_series_description_stays_plain_text() -> None:
    hostile = '<script>alert("x")</script>'
    result = read_dicom(_bytes(_slice(SeriesDescription=hostile)), "x", limits=LIMITS)
    assert isinstance(result, DicomFile)
    assert type(result.series_description) is str and result.series_description == hostile


def test_file_without_preamble_or_meta_header_is_read() -> None:
    ds = _slice()
    del ds.file_meta
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False, implicit_vr=True, little_endian=True)
    result = read_dicom(buffer.getvalue(), "bare", limits=LIMITS)
    assert isinstance(result, DicomFile)
    assert result.transfer_syntax_uid == ImplicitVRLittleEndian


def test_rescale_and_geometry_come_from_the_header() -> None:
    ds = _slice(RescaleSlope=0.5, RescaleIntercept=-1000)
    result = read_dicom(_bytes(ds), "x", limits=LIMITS)
    assert isinstance(result, DicomFile)
    plane = result.planes[0]
    assert (plane.rescale_slope, plane.rescale_intercept) == (0.5, -1000.0)
    assert plane.pixel_spacing_mm == SMALL.pixel_spacing_mm  # row spacing first, as stored
    assert np.allclose(plane.position_lps, SMALL.positions_lps()[0], atol=1e-5)


def test_enhanced_ct_frames_carry_their_own_positions(tmp_path: Path) -> None:
    written = write_series(tmp_path, grid=SMALL, supersample=1, multiframe=True, rescale_intercept=-1024)
    result = read_dicom(written.paths[0], "enhanced", limits=LIMITS)
    assert isinstance(result, DicomFile)
    assert result.pixels.shape == (SMALL.slice_count, SMALL.rows, SMALL.columns)
    positions = np.array([p.position_lps for p in result.planes])
    assert np.allclose(positions, SMALL.positions_lps(), atol=1e-5)
    assert {p.rescale_intercept for p in result.planes} == {-1024.0}


def test_private_tag_and_explicit_vr_file_round_trip_unchanged(tmp_path: Path) -> None:
    # The phantom's fake PHI lives where de-identification tests look for it.
    path = write_series(tmp_path, grid=SMALL, supersample=1, transfer_syntax=ExplicitVRLittleEndian).paths[0]
    ds = pydicom.dcmread(path)
    assert ds.private_block(0x0009, PRIVATE_CREATOR)[0x01].value.endswith("Secret Lane")
