"""Small test solids that tests build themselves (the bone-like ones are fixtures in conftest.py)."""

from __future__ import annotations

import numpy as np
import trimesh
from skimage.measure import marching_cubes

from server.design.meshes import make_mesh
from server.design.phantoms import BOUNDS, bone_field


def sphere(
    radius_mm: float, center: tuple[float, float, float] = (0.0, 0.0, 0.0), subdivisions: int = 3
) -> trimesh.Trimesh:
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius_mm)
    return make_mesh(np.asarray(mesh.vertices) + np.asarray(center), np.asarray(mesh.faces))


def box(
    extents_mm: tuple[float, float, float], center: tuple[float, float, float] = (0.0, 0.0, 0.0)
) -> trimesh.Trimesh:
    mesh = trimesh.creation.box(extents=extents_mm)
    return make_mesh(np.asarray(mesh.vertices) + np.asarray(center), np.asarray(mesh.faces))


def marching_cubes_bone(step_mm: float = 1.0) -> trimesh.Trimesh:
    """The phantom's field through scikit-image's marching cubes, as imaging makes bone surfaces."""
    axes = [np.arange(BOUNDS[i], BOUNDS[i + 3] + step_mm, step_mm) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    values = bone_field(grid.reshape(-1, 3)).reshape(grid.shape[:3])
    vertices, faces, _normals, _values = marching_cubes(values, level=0.0, spacing=(step_mm,) * 3)
    # the field is positive inside, so marching cubes winds the faces inwards
    return make_mesh(vertices + np.asarray(BOUNDS[:3]), faces[:, ::-1])
