"""Slices in the app process: volumes read from the blob store are kept (a few, least recently used
out first) and their PNG slices cached within `slice_cache_bytes`."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import SimpleITK as sitk

from server.core.errors import Invalid
from server.imaging.slices import Plane, SliceCache, SliceError, VolumeGeometry, Window, layout, window

VOLUMES_KEPT = 3


class SliceService:
    def __init__(self, blobs: Any, cache_bytes: int) -> None:
        self.blobs = blobs
        self.cache = SliceCache(cache_bytes)
        self._volumes: OrderedDict[str, sitk.Image] = OrderedDict()
        self._lock = threading.Lock()

    def _volume(self, sha256: str) -> sitk.Image:
        with self._lock:
            image = self._volumes.get(sha256)
            if image is not None:
                self._volumes.move_to_end(sha256)
                return image
        reader = sitk.ImageFileReader()
        reader.SetImageIO("NrrdImageIO")
        reader.SetFileName(str(self.blobs.path_of(sha256)))
        image = reader.Execute()
        with self._lock:
            self._volumes[sha256] = image
            while len(self._volumes) > VOLUMES_KEPT:
                self._volumes.popitem(last=False)
        return image

    def png(self, nrrd_sha256: str, plane: Plane, index: int, win: str) -> bytes:
        image = self._volume(nrrd_sha256)
        try:
            chosen: str | Window = window(win) if "," not in win else Window(*(float(v) for v in win.split(",", 1)))
            count = layout(VolumeGeometry.from_image(image), plane).count
            if not 0 <= index < count:
                raise Invalid(f"{plane} slice {index} is outside the volume (0 to {count - 1})")
            return self.cache.png(nrrd_sha256, image, plane, index, chosen)
        except (SliceError, ValueError, TypeError) as exc:
            raise Invalid(f"cannot draw that slice: {exc}") from None


def render_slice(state: Any, row: Any, plane: Plane, index: int, win: str) -> bytes:
    service: SliceService = state.slices
    return service.png(row.files["nrrd"]["sha256"], plane, index, win)


def geometry_of(meta: dict[str, Any]) -> VolumeGeometry:
    return VolumeGeometry(
        tuple(meta["size"]), tuple(meta["spacing_mm"]), tuple(meta["origin_lps"]), tuple(meta["direction"])
    )


def plane_layouts(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """How each plane is cut and drawn (slice count, image size, pixel size, flips): the slice viewer's map."""
    from dataclasses import asdict

    geometry = geometry_of(meta)
    return {plane: asdict(layout(geometry, plane)) for plane in ("axial", "coronal", "sagittal")}
