"""Siemens MR mosaics: one stored image holding N slices as tiles, plus the private CSA header.

The stored ImagePositionPatient is that of the whole mosaic matrix centred where the tile is centred,
so the first tile's true corner is shifted by half the size difference (the correction dcm2niix makes).
Slices are tiles in row-major order, stepping by SpacingBetweenSlices along the CSA SliceNormalVector.
"""

from __future__ import annotations

import math
import struct

import numpy as np
from pydicom.dataset import Dataset

from server.imaging.planes import FramePlane

_CSA_IMAGE_HEADER = 0x00291010
_MOSAIC_COUNT_TAG = 0x0019100A  # NumberOfImagesInMosaic, private creator "SIEMENS MR HEADER"


def parse_csa(data: bytes) -> dict[str, list[str]]:
    """Items of a Siemens CSA header (formats CSA1 and CSA2 'SV10'), as stripped strings by tag name.

    Bounds are checked on every read: a malformed header yields what was read so far."""
    tags: dict[str, list[str]] = {}
    offset = 8 if data[:4] == b"SV10" else 0
    csa2 = offset == 8
    try:
        count = struct.unpack_from("<I", data, offset)[0]
        offset += 8
        first_items: int | None = None
        for _ in range(min(count, 1024)):
            name = data[offset : offset + 64].split(b"\x00", 1)[0].decode("latin-1")
            items = struct.unpack_from("<i", data, offset + 76)[0]
            first_items = items if first_items is None else first_items
            offset += 84
            values = []
            for _ in range(min(max(items, 0), 4096)):
                fields = struct.unpack_from("<4i", data, offset)
                length = fields[1] if csa2 else fields[0] - first_items  # CSA1's odd length field
                offset += 16
                if length < 0 or offset + length > len(data):
                    return tags
                values.append(data[offset : offset + length].split(b"\x00", 1)[0].decode("latin-1").strip())
                offset += (length + 3) // 4 * 4
            tags[name] = [v for v in values if v]
    except struct.error:
        pass
    return tags


def _csa(ds: Dataset) -> dict[str, list[str]]:
    elem = ds.get(_CSA_IMAGE_HEADER)
    value = getattr(elem, "value", None)
    return parse_csa(value) if isinstance(value, bytes) else {}


def mosaic_tile_count(ds: Dataset, image_type: tuple[str, ...]) -> int | None:
    """How many slices a Siemens mosaic holds, or None when this is no mosaic."""
    if "MOSAIC" not in image_type:
        return None
    elem = ds.get(_MOSAIC_COUNT_TAG)
    try:
        value = getattr(elem, "value", None)
        if isinstance(value, bytes):  # read as UN when the private dictionary is not applied
            value = struct.unpack("<H", value[:2])[0]
        count = int(value) if value is not None else 0
    except (TypeError, ValueError, struct.error):
        count = 0
    if count <= 0:
        csa = _csa(ds).get("NumberOfImagesInMosaic", [])
        count = int(float(csa[0])) if csa else 0
    return count if count > 1 else None


def demosaic(ds: Dataset, mosaic: np.ndarray, plane: FramePlane, tiles: int) -> tuple[np.ndarray, list[FramePlane]]:
    """Split a mosaic into (tiles, tile_rows, tile_columns) and give every tile its own plane."""
    per_side = math.ceil(math.sqrt(tiles))
    tile_rows, tile_columns = mosaic.shape[0] // per_side, mosaic.shape[1] // per_side
    if tile_rows == 0 or tile_columns == 0:
        raise ValueError(f"{tiles} tiles do not fit a {mosaic.shape[0]}x{mosaic.shape[1]} mosaic")
    slices = np.stack(
        [
            mosaic[
                (t // per_side) * tile_rows : (t // per_side + 1) * tile_rows,
                (t % per_side) * tile_columns : (t % per_side + 1) * tile_columns,
            ]
            for t in range(tiles)
        ]
    )
    if plane.position_lps is None or plane.orientation is None or plane.pixel_spacing_mm is None:
        return slices, [plane] * tiles
    row_dir, col_dir = np.asarray(plane.orientation[:3]), np.asarray(plane.orientation[3:])
    spacing_row_mm, spacing_col_mm = plane.pixel_spacing_mm
    first = (
        np.asarray(plane.position_lps)
        + row_dir * spacing_col_mm * (mosaic.shape[1] - tile_columns) / 2
        + col_dir * spacing_row_mm * (mosaic.shape[0] - tile_rows) / 2
    )
    normal = np.cross(row_dir, col_dir)
    csa_normal = _csa(ds).get("SliceNormalVector", [])
    if len(csa_normal) == 3 and float(np.dot([float(v) for v in csa_normal], normal)) < 0:
        normal = -normal  # slices were acquired against row x column
    step_mm = _spacing_between_slices_mm(ds, plane)
    if step_mm is None:  # no stated spacing: leave the tiles without positions rather than guess
        return slices, [
            FramePlane(None, plane.orientation, plane.pixel_spacing_mm, plane.rescale_slope, plane.rescale_intercept)
        ] * tiles
    planes = [
        FramePlane(
            position_lps=tuple(float(v) for v in first + t * step_mm * normal),  # type: ignore[arg-type]
            orientation=plane.orientation,
            pixel_spacing_mm=plane.pixel_spacing_mm,
            rescale_slope=plane.rescale_slope,
            rescale_intercept=plane.rescale_intercept,
            slice_thickness_mm=plane.slice_thickness_mm,
        )
        for t in range(tiles)
    ]
    return slices, planes


def _spacing_between_slices_mm(ds: Dataset, plane: FramePlane) -> float | None:
    for value in (ds.get("SpacingBetweenSlices"), plane.slice_thickness_mm):
        try:
            if value is not None and float(value) > 0:
                return float(value)
        except (TypeError, ValueError):
            continue
    return None
