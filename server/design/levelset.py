"""Solids from vectorized implicit functions through manifold3d's level set (marching tetrahedra on a
body-centred cubic grid, always a closed 2-manifold).

manifold3d calls a Python function once per grid point, too slow for a function that queries a mesh.
So the grid is asked for first (a pass whose function only records its points), the function is
evaluated on all points at once with numpy, and a second pass replays the values in the same order.
The order is checked point by point; a point not seen in the first pass is evaluated on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import manifold3d
import numpy as np

VectorField = Callable[[np.ndarray], np.ndarray]  # (N, 3) points → (N,) values, positive inside


def level_set(field: VectorField, bounds: Sequence[float], edge_mm: float) -> tuple[manifold3d.Manifold, int]:
    """The solid {p : field(p) > 0} within `bounds` (xmin, ymin, zmin, xmax, ymax, zmax), with edges of
    about `edge_mm`; returns it and the number of grid points evaluated."""
    recorded: list[tuple[float, float, float]] = []

    def record(x: float, y: float, z: float) -> float:
        recorded.append((x, y, z))
        return -1.0

    manifold3d.Manifold.level_set(record, list(bounds), edge_mm)
    values = np.asarray(field(np.asarray(recorded, dtype=np.float64)), dtype=np.float64).tolist()
    position = 0

    def replay(x: float, y: float, z: float) -> float:
        nonlocal position
        if position < len(recorded) and recorded[position] == (x, y, z):
            position += 1
            return values[position - 1]
        return float(field(np.asarray([[x, y, z]], dtype=np.float64))[0])  # not expected; stays correct

    solid = manifold3d.Manifold.level_set(replay, list(bounds), edge_mm)
    return solid, len(recorded)
