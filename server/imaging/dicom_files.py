"""Reading one DICOM file safely: a decoded `DicomFile`, or a `FileProblem` with a stable code and a reason.

Every check that guards memory or the stack runs before the pixels are decoded: the declared matrix
size against `Limits`, the sequence nesting depth (iteratively, so the check itself cannot recurse),
and the transfer syntax against the decoders actually installed here. Text attributes come back as
plain `str`; nothing read from a file is ever evaluated.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGExtended12Bit,
)

from server.imaging.planes import FramePlane, frame_planes
from server.imaging.siemens_mosaic import demosaic, mosaic_tile_count


class ProblemCode(StrEnum):
    NOT_DICOM = "not_dicom"
    UNREADABLE = "unreadable"
    TRUNCATED = "truncated"
    INVALID_HEADER = "invalid_header"
    NO_PIXEL_DATA = "no_pixel_data"
    UNSUPPORTED_TRANSFER_SYNTAX = "unsupported_transfer_syntax"
    VENDOR_PRIVATE_COMPRESSION = "vendor_private_compression"
    TOO_LARGE = "too_large"
    NESTED_TOO_DEEP = "nested_too_deep"
    PIXEL_DECODE_FAILED = "pixel_decode_failed"
    NOT_GRAYSCALE = "not_grayscale"
    LOCALIZER = "localizer"
    SECONDARY_CAPTURE = "secondary_capture"
    DERIVED_SECONDARY = "derived_secondary"
    DUPLICATE_SOP_INSTANCE = "duplicate_sop_instance"  # found when a series is built
    DUPLICATE_IMAGE = "duplicate_image"  # same position and pixels as another instance (series level)


@dataclass(frozen=True)
class Limits:
    """What one file may declare before we spend memory on it (the server maps its settings here)."""

    max_file_bytes: int = 2 * 1024**3
    max_pixels_per_frame: int = 4096 * 4096
    max_frames: int = 4096
    max_decoded_bytes: int = 2 * 1024**3
    max_nesting_depth: int = 32


@dataclass(frozen=True)
class FileProblem:
    """A file that is not (part of) a volume, with why. `series_instance_uid` is set when known."""

    name: str
    code: ProblemCode
    reason: str
    sop_instance_uid: str = ""
    series_instance_uid: str = ""


@dataclass
class DicomFile:
    """One decoded image file. `pixels` holds stored values (frames, rows, columns), before rescale;
    `planes[f]` is the geometry and rescale of frame f (a Siemens mosaic is already split into tiles)."""

    name: str
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    series_number: int | None
    series_description: str
    modality: str
    transfer_syntax_uid: str
    image_type: tuple[str, ...]
    rows: int
    columns: int
    planes: list[FramePlane]
    pixels: np.ndarray
    discriminators: dict[str, str]  # attributes that separate stacks sharing one series UID
    notes: list[str]


_SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
_DISCRIMINATORS = ("EchoNumbers", "TemporalPositionIdentifier", "AcquisitionNumber", "ImageType")
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # PixelData, FloatPixelData, DoubleFloatPixelData
_SIEMENS_CSA_TAGS = (0x00291010, 0x00291020)


def text(ds: Dataset, keyword: str) -> str:
    """An attribute as a plain string ('' when absent or unreadable); multi-values joined by '\\'."""
    try:
        value = ds.get(keyword)
    except Exception:  # a malformed value must not take the whole file down
        return ""
    if value is None:
        return ""
    if isinstance(value, list | tuple | MultiValue):
        value = "\\".join(str(v) for v in value)
    return str(value).replace("\x00", "").strip()[:1024]


def _number(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def read_dicom(source: Path | bytes, name: str, *, limits: Limits) -> DicomFile | FileProblem:
    """Read, classify and decode one file. Never raises for bad input: every failure is a FileProblem."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about many harmless deviations
            return _read(source, name, limits)
    except RecursionError:
        return FileProblem(name, ProblemCode.NESTED_TOO_DEEP, "sequences nest too deeply to read safely")
    except MemoryError:
        return FileProblem(name, ProblemCode.TOO_LARGE, "not enough memory to read this file")


def _open(source: Path | bytes, name: str, limits: Limits) -> tuple[Dataset, int] | FileProblem:
    try:
        size = len(source) if isinstance(source, bytes) else source.stat().st_size
        if size > limits.max_file_bytes:
            return FileProblem(
                name, ProblemCode.TOO_LARGE, f"file is {size} bytes; the limit is {limits.max_file_bytes}"
            )
        data = source if isinstance(source, bytes) else source.read_bytes()
    except OSError as exc:
        return FileProblem(name, ProblemCode.UNREADABLE, f"cannot read the file: {exc.strerror or exc}")
    try:
        return pydicom.dcmread(io.BytesIO(data)), len(data)
    except InvalidDicomError:
        pass
    except RecursionError:
        raise
    except Exception as exc:
        return FileProblem(name, ProblemCode.TRUNCATED, f"the file ends or breaks inside its header: {exc}")
    # Files without the 128-byte preamble and meta header are legal in old archives: accept only
    # when a forced read finds the identifying attributes of a stored instance.
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        if "SOPInstanceUID" in ds and "SOPClassUID" in ds:
            return ds, len(data)
    except RecursionError:
        raise
    except Exception:
        pass
    return FileProblem(name, ProblemCode.NOT_DICOM, "not a DICOM file (no 'DICM' prefix and no recognisable dataset)")


def _header_problem(ds: Dataset, name: str, limits: Limits) -> FileProblem | None:
    """Walk every element iteratively: converts lazily read values (catching truncation) and measures
    sequence depth without recursing."""
    stack: list[tuple[Dataset, int]] = [(ds, 0)]
    while stack:
        current, depth = stack.pop()
        if depth > limits.max_nesting_depth:
            return FileProblem(
                name, ProblemCode.NESTED_TOO_DEEP, f"sequences nest deeper than {limits.max_nesting_depth} levels"
            )
        for tag in list(current.keys()):
            raw = current.get_item(tag)
            length = getattr(raw, "length", 0)
            value = getattr(raw, "value", None)
            if isinstance(value, bytes) and length != 0xFFFFFFFF and len(value) < length:
                return FileProblem(
                    name, ProblemCode.TRUNCATED, f"file ends inside element {tag} ({len(value)} of {length} bytes)"
                )
            if int(tag) in _PIXEL_TAGS:
                continue  # pixel data stays raw until decoding
            try:
                elem = current[tag]
            except RecursionError:
                raise
            except Exception as exc:
                return FileProblem(
                    name,
                    ProblemCode.TRUNCATED if isinstance(exc, OSError | EOFError) else ProblemCode.INVALID_HEADER,
                    f"element {tag} cannot be read: {exc}",
                )
            if elem.VR == "SQ":
                stack.extend((item, depth + 1) for item in elem.value)
    return None


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid:
        return UID(str(uid))
    # A dataset read without meta header: what pydicom found while parsing.
    implicit, little = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _syntax_name(uid: UID) -> str:
    return f"{uid.name}, {uid}" if uid.is_transfer_syntax else f"unknown transfer syntax {uid}"


def _undecodable(uid: UID, ds: Dataset) -> str | None:
    """Why pixel data in this syntax cannot be decoded here, or None when a decoder is installed."""
    if not uid.is_transfer_syntax:
        return f"{_syntax_name(uid)}: not a transfer syntax pydicom knows"
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return f"{_syntax_name(uid)}: pydicom has no decoder for it"
    if not decoder.is_available:
        return f"{_syntax_name(uid)}: no decoder available here"
    bits = _number(ds, "BitsStored") or 8
    if uid == JPEGExtended12Bit and bits > 8 and "pylibjpeg" not in decoder.available_plugins:
        # GDCM and Pillow are installed but decode only 8-bit JPEG Extended.
        tried = ", ".join(decoder.available_plugins) or "none"
        return f"JPEG Extended (Process 2 & 4), {bits}-bit, {uid}: no decoder available here (tried: {tried})"
    return None


def _private_pixels(ds: Dataset) -> str | None:
    """A large private binary element where pixel data would be: vendor-compressed pixels."""
    rows, columns = _number(ds, "Rows") or 0, _number(ds, "Columns") or 0
    if not rows or not columns:
        return None
    for tag in list(ds.keys()):
        if tag.is_private and int(tag) not in _SIEMENS_CSA_TAGS and not tag.is_private_creator:
            elem = ds[tag]  # already converted by the nesting walk
            length = len(elem.value) if isinstance(elem.value, bytes) else 0
            if length >= max(4096, rows * columns // 16) and elem.VR in ("OB", "OW", "UN"):
                return (
                    f"no PixelData, but private element {tag} holds {length} bytes (vendor-private pixel compression)"
                )
    return None


def _exclusion(ds: Dataset, name: str, image_type: tuple[str, ...], ids: dict[str, str]) -> FileProblem | None:
    if "LOCALIZER" in image_type:
        return FileProblem(name, ProblemCode.LOCALIZER, "localizer (scout) image: not part of a volume", **ids)
    if text(ds, "SOPClassUID").startswith(_SECONDARY_CAPTURE_PREFIX):
        return FileProblem(
            name,
            ProblemCode.SECONDARY_CAPTURE,
            "secondary capture (a picture of an image): not part of a volume",
            **ids,
        )
    has_geometry = all(k in ds for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"))
    enhanced = "PerFrameFunctionalGroupsSequence" in ds
    if image_type[:2] == ("DERIVED", "SECONDARY") and not (has_geometry or enhanced):
        return FileProblem(
            name,
            ProblemCode.DERIVED_SECONDARY,
            "DERIVED\\SECONDARY image without patient geometry (a screenshot): not part of a volume",
            **ids,
        )
    return None


def _read(source: Path | bytes, name: str, limits: Limits) -> DicomFile | FileProblem:
    opened = _open(source, name, limits)
    if isinstance(opened, FileProblem):
        return opened
    ds, size = opened
    problem = _trailing_bytes_problem(ds, name, size) or _header_problem(ds, name, limits)
    if problem is not None:
        return problem
    ids = {"sop_instance_uid": text(ds, "SOPInstanceUID"), "series_instance_uid": text(ds, "SeriesInstanceUID")}
    image_type = tuple(v.upper() for v in text(ds, "ImageType").split("\\") if v)
    problem = _exclusion(ds, name, image_type, ids) or _pixel_problem(ds, name, ids, limits)
    if problem is not None:
        return problem
    uid = _transfer_syntax(ds)
    frames = _number(ds, "NumberOfFrames") or 1
    try:
        ds.file_meta.TransferSyntaxUID = uid  # pydicom needs it even for files read without meta
        pixels = np.asarray(ds.pixel_array).reshape(frames, int(ds.Rows), int(ds.Columns))
    except RecursionError:
        raise
    except Exception as exc:
        reason = f"{_syntax_name(uid)}: pixel data could not be decoded: {exc}"
        return FileProblem(name, ProblemCode.PIXEL_DECODE_FAILED, reason, **ids)
    planes = frame_planes(ds, frames)
    notes: list[str] = []
    tiles = mosaic_tile_count(ds, image_type) if frames == 1 else None
    if tiles:
        try:
            pixels, planes = demosaic(ds, pixels[0], planes[0], tiles)
        except ValueError as exc:
            return FileProblem(name, ProblemCode.INVALID_HEADER, f"Siemens mosaic cannot be split: {exc}", **ids)
        notes.append(f"Siemens mosaic of {tiles} tiles split into slices")
    return DicomFile(
        name=name,
        sop_instance_uid=ids["sop_instance_uid"],
        sop_class_uid=text(ds, "SOPClassUID"),
        study_instance_uid=text(ds, "StudyInstanceUID"),
        series_instance_uid=ids["series_instance_uid"],
        series_number=_number(ds, "SeriesNumber"),
        series_description=text(ds, "SeriesDescription"),
        modality=text(ds, "Modality"),
        transfer_syntax_uid=str(uid),
        image_type=image_type,
        rows=int(pixels.shape[1]),
        columns=int(pixels.shape[2]),
        planes=planes,
        pixels=pixels,
        discriminators={k: text(ds, k) for k in _DISCRIMINATORS} | {"TransferSyntaxUID": str(uid)},
        notes=notes,
    )


def _trailing_bytes_problem(ds: Dataset, name: str, size: int) -> FileProblem | None:
    if len(ds) == 0:
        return FileProblem(name, ProblemCode.TRUNCATED, "file ends right after its meta header")
    last = ds.get_item(list(ds.keys())[-1])
    tell, length = getattr(last, "value_tell", None), getattr(last, "length", 0xFFFFFFFF)
    if tell is not None and length != 0xFFFFFFFF and tell + length < size:
        # pydicom stops quietly when too few bytes remain for the next element's header.
        reason = f"file ends inside an element header after byte {tell + length}"
        return FileProblem(name, ProblemCode.TRUNCATED, reason)
    return None


def _pixel_problem(ds: Dataset, name: str, ids: dict[str, str], limits: Limits) -> FileProblem | None:
    """Everything that rules the pixels out, checked on the header alone: before any decoding."""
    if not any(tag in ds for tag in _PIXEL_TAGS):
        private = _private_pixels(ds)
        if private:
            return FileProblem(name, ProblemCode.VENDOR_PRIVATE_COMPRESSION, private, **ids)
        kind = text(ds, "Modality") or "this object"
        return FileProblem(name, ProblemCode.NO_PIXEL_DATA, f"no pixel data ({kind}): not an image", **ids)
    if "PixelData" not in ds:
        return FileProblem(name, ProblemCode.NO_PIXEL_DATA, "only float pixel data, which is not a CT/MR image", **ids)
    rows, columns = _number(ds, "Rows") or 0, _number(ds, "Columns") or 0
    frames = _number(ds, "NumberOfFrames") or 1
    bits = _number(ds, "BitsAllocated") or 0
    samples = _number(ds, "SamplesPerPixel") or 1
    if rows <= 0 or columns <= 0 or bits <= 0 or frames <= 0:
        reason = f"image matrix declared as {rows}x{columns}, {frames} frame(s), {bits} bits allocated"
        return FileProblem(name, ProblemCode.INVALID_HEADER, reason, **ids)
    declared = rows * columns * frames * samples * bits // 8
    if (
        rows * columns > limits.max_pixels_per_frame
        or frames > limits.max_frames
        or declared > limits.max_decoded_bytes
    ):
        reason = (
            f"declares {rows}x{columns} pixels x {frames} frames x {bits} bits ({declared} bytes decoded); "
            f"limits: {limits.max_pixels_per_frame} pixels per frame, {limits.max_frames} frames, "
            f"{limits.max_decoded_bytes} bytes"
        )
        return FileProblem(name, ProblemCode.TOO_LARGE, reason, **ids)
    photometric = text(ds, "PhotometricInterpretation")
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        reason = f"{photometric or 'unknown'} image with {samples} samples per pixel: not a CT/MR volume"
        return FileProblem(name, ProblemCode.NOT_GRAYSCALE, reason, **ids)
    uid = _transfer_syntax(ds)
    undecodable = _undecodable(uid, ds)
    if undecodable:
        return FileProblem(name, ProblemCode.UNSUPPORTED_TRANSFER_SYNTAX, undecodable, **ids)
    if not uid.is_compressed and len(ds.PixelData) < declared:
        reason = f"pixel data holds {len(ds.PixelData)} of {declared} declared bytes"
        return FileProblem(name, ProblemCode.TRUNCATED, reason, **ids)
    return None
