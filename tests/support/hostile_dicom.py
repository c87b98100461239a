"""Hostile DICOM files as bytes: sequences nested thousands deep, and huge declared matrices in a few KB."""

from __future__ import annotations

import io
import struct

from pydicom.uid import generate_uid

from tests.support.dicom_headers import CT_IMAGE_STORAGE, FAKE_PATIENT, base_dataset


def deeply_nested_bytes(depth: int = 5000, *, undefined_length: bool = True) -> bytes:
    """A small file whose ContentSequence nests `depth` levels deep, built iteratively as raw bytes.

    With undefined lengths pydicom must recurse through every level while reading (RecursionError);
    with defined lengths it parses lazily and recursion happens when the nested items are used.
    """
    ds = base_dataset(CT_IMAGE_STORAGE, FAKE_PATIENT, generate_uid(), generate_uid())
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
    ds = base_dataset(CT_IMAGE_STORAGE, FAKE_PATIENT, generate_uid(), generate_uid())
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
