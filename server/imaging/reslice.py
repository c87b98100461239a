"""Resampling a sorted stack of slices onto its orthogonal OutputGrid (see geometry.py).

Arrays are numpy (slice, row, column) = SimpleITK's (z, y, x). Between slices we interpolate linearly
along the normal from the real positions; a sheared (tilted) stack is also shifted in-plane, bilinearly,
by the drift at that depth. Points outside the scanned data get `fill_hu`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from server.imaging.geometry import OutputGrid, StackLayout


def reslice(stack_hu: np.ndarray, layout: StackLayout, grid: OutputGrid, fill_hu: float) -> np.ndarray:
    """stack_hu (n, rows, columns) in sorted order -> (slices, rows', columns') float32 on grid."""
    if layout.uniform and not layout.sheared:
        return stack_hu
    columns_out, rows_out, slices_out = grid.size
    offsets = layout.normal_offsets_mm
    out = np.empty((slices_out, rows_out, columns_out), dtype=np.float32)
    last = len(offsets) - 1
    for m in range(slices_out):
        t_mm = min(m * grid.spacing_mm[2], float(offsets[-1]))
        kappa = float(np.interp(t_mm, offsets, np.arange(len(offsets))))
        k0 = min(int(np.floor(kappa)), last - 1)
        weight = kappa - k0
        # Pixel (i, j) of this output slice sits at source index (i - a_i, j - a_j) of the sheared lattice.
        shift_rows = grid.first_index[1] + layout.shear_mm_per_mm[1] * t_mm / layout.spacing_row_mm
        shift_cols = grid.first_index[0] + layout.shear_mm_per_mm[0] * t_mm / layout.spacing_col_mm
        blended = (1.0 - weight) * _place(stack_hu[k0], (shift_rows, shift_cols), (rows_out, columns_out), fill_hu)
        if weight > 0:
            blended += weight * _place(stack_hu[k0 + 1], (shift_rows, shift_cols), (rows_out, columns_out), fill_hu)
        out[m] = blended
    return out


def _place(image: np.ndarray, shift: tuple[float, float], shape: tuple[int, int], fill_hu: float) -> np.ndarray:
    """image moved by `shift` (rows, columns) pixels into a canvas of `shape`, bilinear, fill outside."""
    if shift == (0.0, 0.0) and image.shape == shape:
        return image.astype(np.float32, copy=False)
    canvas = np.full(shape, fill_hu, dtype=np.float32)
    canvas[: image.shape[0], : image.shape[1]] = image
    # Pixels beyond the source image must read as outside, not as the canvas padding's neighbours.
    valid = np.zeros(shape, dtype=np.float32)
    valid[: image.shape[0], : image.shape[1]] = 1.0
    moved = ndimage.shift(canvas, shift, order=1, mode="constant", cval=fill_hu, prefilter=False)
    inside = ndimage.shift(valid, shift, order=1, mode="constant", cval=0.0, prefilter=False)
    return np.where(inside > 0.999, moved, fill_hu).astype(np.float32)
