"""A label map upload is told from its first bytes: NRRD, NIfTI-1/2, plain or gzip-compressed; anything
else (or nothing) is refused with a typed error naming the file, without reading it whole."""

from __future__ import annotations

import gzip
import io
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from server.imaging.label_map_files import (
    LabelMapEmpty,
    LabelMapFormatError,
    identify_label_map,
    identify_label_map_file,
)


class CountingReader(io.BytesIO):
    """A file that remembers how many bytes were read from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def nifti2_header(byte_order: str = "<", magic: bytes = b"n+2\0\r\n\x1a\n") -> bytes:
    header = bytearray(544)
    struct.pack_into(f"{byte_order}i", header, 0, 540)
    header[4:12] = magic
    return bytes(header)


def nifti1_header(byte_order: str = "<", magic: bytes = b"n+1\0") -> bytes:
    header = bytearray(352)
    struct.pack_into(f"{byte_order}i", header, 0, 348)
    header[344:348] = magic
    return bytes(header)


@pytest.mark.parametrize(
    ("filename", "format", "gzipped", "suffix"),
    [
        ("seg.nrrd", "nrrd", False, ".nrrd"),
        ("seg.seg.nrrd", "nrrd", False, ".nrrd"),
        ("seg.nii", "nifti1", False, ".nii"),
        ("seg.nii.gz", "nifti1", True, ".nii.gz"),
    ],
)
def test_files_written_by_simpleitk_are_told_apart(
    tmp_path: Path, filename: str, format: str, gzipped: bool, suffix: str
) -> None:
    path = tmp_path / filename
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 5, 6), dtype=np.uint8)), str(path), useCompression=True)
    spooled = tmp_path / "000000.part"  # the spool file has no suffix
    spooled.write_bytes(path.read_bytes())
    kind = identify_label_map_file(spooled, filename)
    assert (kind.format, kind.gzipped, kind.suffix) == (format, gzipped, suffix)


def test_nifti2_and_big_endian_nifti1_headers_are_recognised() -> None:
    assert identify_label_map(io.BytesIO(nifti2_header())).format == "nifti2"
    assert identify_label_map(io.BytesIO(nifti2_header(">"))).format == "nifti2"
    assert identify_label_map(io.BytesIO(nifti1_header(">"))).format == "nifti1"
    gzipped = identify_label_map(io.BytesIO(gzip.compress(nifti2_header())))
    assert gzipped.format == "nifti2" and gzipped.suffix == ".nii.gz"


def test_a_compressed_nifti_is_identified_from_its_header_alone() -> None:
    body = os.urandom(8 * 1024 * 1024)  # incompressible: the file is as large as its voxels
    stream = CountingReader(gzip.compress(nifti1_header() + body, compresslevel=1))
    assert identify_label_map(stream).gzipped
    assert stream.bytes_read < 512 * 1024, stream.bytes_read  # not the 8 MiB


def test_a_compressed_nifti_whose_body_is_damaged_is_still_identified() -> None:
    """Only the header is decompressed here; the job reports a damaged body."""
    data = gzip.compress(nifti1_header() + bytes(1_000_000))
    damaged = data[:200] + bytes(len(data) - 200)
    assert identify_label_map(io.BytesIO(damaged)).format == "nifti1"


def test_an_empty_file_is_refused_as_empty() -> None:
    with pytest.raises(LabelMapEmpty, match=r"'seg\.nrrd' is empty") as refused:
        identify_label_map(io.BytesIO(b""), "'seg.nrrd'")
    assert refused.value.code == "label_map_empty" and refused.value.status == 422


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"GIF89a not a label map", "neither NRRD nor NIfTI: export"),
        (bytes(128) + b"DICM" + bytes(200), "it looks like a DICOM file"),
        (b"PK\x03\x04" + bytes(100), "it looks like a zip archive"),
        (b"ObjectType = Image\nNDims = 3\n", "it looks like a MetaImage"),
        (b"NRRD", "neither NRRD nor NIfTI"),  # the magic is NRRD000 and a version digit
        (gzip.compress(b"NRRD0004\ntype: uchar\n"), "gzip-compressed but holds no NIfTI header"),
        (b"\x1f\x8b" + bytes(30), "gzip-compressed but cannot be decompressed"),
        (nifti1_header()[:200], "ends inside its NIfTI header (200 of 348 bytes)"),
        (gzip.compress(nifti2_header()[:300]), "ends inside its NIfTI header (300 of 540 bytes)"),
        (nifti1_header(magic=b"ni1\0"), "the header of a NIfTI .hdr/.img pair"),
        (nifti2_header(magic=b"ni2\0\r\n\x1a\n"), "the header of a NIfTI .hdr/.img pair"),
        (nifti1_header(magic=b"xxxx"), "neither NRRD nor NIfTI"),
    ],
)
def test_anything_else_is_refused_saying_what_it_is(data: bytes, says: str) -> None:
    with pytest.raises(LabelMapFormatError, match=r"'upload\.bin'") as refused:
        identify_label_map(io.BytesIO(data), "'upload.bin'")
    assert says in refused.value.message
    assert type(refused.value) is LabelMapFormatError
    assert refused.value.code == "label_map_format" and refused.value.status == 415
