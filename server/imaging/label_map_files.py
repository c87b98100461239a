"""What a label map file is, from its first bytes: NRRD (3D Slicer's .nrrd and .seg.nrrd), NIfTI-1 or
NIfTI-2, plain (.nii) or gzip-compressed (.nii.gz, of which only the header is decompressed).

The upload edge refuses anything else at once, before a job is queued, without reading the file whole;
the job reads the bytes with the suffix named here (SimpleITK picks its reader by the file name).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from server.core.errors import TrinityError

NRRD_MAGIC = b"NRRD000"  # then the format version digit: NRRD0004, NRRD0005
GZIP_MAGIC = b"\x1f\x8b"
NIFTI1_HEADER_BYTES = 348  # sizeof_hdr; the magic is at offset 344
NIFTI2_HEADER_BYTES = 540  # sizeof_hdr; the magic is at offset 4
NiftiVersion = Literal["nifti1", "nifti2"]
# (version, sizeof_hdr, offset of the magic, magic of a single file, magic of a .hdr/.img pair)
NIFTI_HEADERS: tuple[tuple[NiftiVersion, int, int, bytes, bytes], ...] = (
    ("nifti1", NIFTI1_HEADER_BYTES, 344, b"n+1\0", b"ni1\0"),
    ("nifti2", NIFTI2_HEADER_BYTES, 4, b"n+2\0", b"ni2\0"),
)
EXPORT_HINT = "export the segmentation as a labelmap volume: .nrrd, .seg.nrrd, .nii or .nii.gz"
# What a wrong file often is, to say so: (magic, offset, what it is).
LOOKS_LIKE = (
    (b"DICM", 128, "a DICOM file (CT series go to the imaging uploads)"),
    (b"PK\x03\x04", 0, "a zip archive"),
    (b"ObjectType", 0, "a MetaImage (.mha/.mhd)"),
    (b"\x89PNG", 0, "a PNG image"),
)


class LabelMapFormatError(TrinityError):
    """Not a label map this server reads: neither NRRD nor NIfTI, a truncated header, a header without
    its image."""

    status = 415
    code = "label_map_format"


class LabelMapEmpty(LabelMapFormatError):
    status = 422
    code = "label_map_empty"


@dataclass(frozen=True)
class LabelMapKind:
    format: Literal["nrrd"] | NiftiVersion
    gzipped: bool = False

    @property
    def suffix(self) -> str:
        if self.format == "nrrd":
            return ".nrrd"  # NRRD compresses inside, after its text header
        return ".nii.gz" if self.gzipped else ".nii"


def identify_label_map(stream: BinaryIO, name: str = "the label map") -> LabelMapKind:
    """The kind of the label map `stream` holds, read from its start (at most one header, decompressed
    when gzip-compressed); LabelMapEmpty or LabelMapFormatError, naming `name`, when it holds none."""
    head = stream.read(NIFTI2_HEADER_BYTES)
    if not head:
        raise LabelMapEmpty(f"{name} is empty (0 bytes): {EXPORT_HINT}")
    if head.startswith(NRRD_MAGIC) and head[7:8].isdigit():
        return LabelMapKind("nrrd")
    if head.startswith(GZIP_MAGIC):
        stream.seek(0)
        try:
            with gzip.GzipFile(fileobj=stream, mode="rb") as inner:
                header = inner.read(NIFTI2_HEADER_BYTES)  # decompresses this much, not the file
        except (OSError, EOFError, zlib.error) as exc:
            raise LabelMapFormatError(f"{name} is gzip-compressed but cannot be decompressed ({exc})") from None
        version = _nifti_version(header, name)
        if version is None:
            raise LabelMapFormatError(f"{name} is gzip-compressed but holds no NIfTI header: {EXPORT_HINT}")
        return LabelMapKind(version, gzipped=True)
    version = _nifti_version(head, name)
    if version is None:
        seen = next((f" (it looks like {what})" for magic, at, what in LOOKS_LIKE if head[at:].startswith(magic)), "")
        raise LabelMapFormatError(f"{name} is neither NRRD nor NIfTI{seen}: {EXPORT_HINT}")
    return LabelMapKind(version)


def identify_label_map_file(path: Path, name: str) -> LabelMapKind:
    with path.open("rb") as stream:
        return identify_label_map(stream, repr(name))


def _nifti_version(header: bytes, name: str) -> NiftiVersion | None:
    """NIfTI-1 or NIfTI-2 by sizeof_hdr (either byte order) and magic; None when it is neither."""
    if len(header) < 4:
        return None
    sizes = {struct.unpack("<i", header[:4])[0], struct.unpack(">i", header[:4])[0]}
    for version, size, magic_at, single, pair in NIFTI_HEADERS:
        if size not in sizes:
            continue
        if len(header) < size:
            raise LabelMapFormatError(f"{name} ends inside its NIfTI header ({len(header)} of {size} bytes)")
        magic = header[magic_at : magic_at + 4]
        if magic == single:
            return version
        if magic == pair:
            raise LabelMapFormatError(
                f"{name} is the header of a NIfTI .hdr/.img pair, without its image: upload one .nii or .nii.gz"
            )
    return None
