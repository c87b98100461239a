"""Decoded frames of one stored instance, as the raw little-endian bytes WADO-RS serves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from server.core.errors import NotFound


def read_frames(path: Path, numbers: list[int]) -> list[bytes]:
    ds = pydicom.dcmread(path)
    count = int(getattr(ds, "NumberOfFrames", 1) or 1)
    bad = [n for n in numbers if not 1 <= n <= count]
    if bad:
        raise NotFound(f"frame {bad[0]} does not exist: this instance has {count} frame(s)")
    pixels = ds.pixel_array
    if count == 1:
        pixels = pixels[np.newaxis, ...]
    return [
        np.ascontiguousarray(pixels[n - 1]).astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()
        for n in numbers
    ]
