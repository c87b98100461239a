"""The bridge to manifold3d, with the checks its silence needs.

manifold3d returns an empty result, without an error, for a mesh it cannot take (open, non-manifold)
and takes an inside-out mesh as a solid of negative volume; `to_manifold` turns both into typed
errors. Its outputs are closed 2-manifolds by construction, so results are built with process=False
(trimesh merging their vertices could make them non-manifold) and not checked again.
"""

from __future__ import annotations

import manifold3d
import numpy as np
import trimesh

from server.design.errors import EmptyResult, MeshEmpty, MeshInsideOut, MeshNotManifold
from server.design.meshes import make_mesh


def to_manifold(mesh: trimesh.Trimesh, role: str = "mesh") -> manifold3d.Manifold:
    """A solid of positive volume, or MeshEmpty / MeshNotManifold / MeshInsideOut naming `role`."""
    return to_manifold_measured(mesh, role)[0]


def to_manifold_measured(mesh: trimesh.Trimesh, role: str = "mesh") -> tuple[manifold3d.Manifold, float]:
    """`to_manifold` and the volume it checked (a pass over the mesh, not worth repeating)."""
    if len(mesh.faces) == 0:
        raise MeshEmpty(f"{role}: no triangles", role=role)
    solid = from_arrays(np.asarray(mesh.vertices), np.asarray(mesh.faces))
    status = solid.status()
    if status != manifold3d.Error.NoError or solid.is_empty():
        raise MeshNotManifold(
            f"{role}: manifold3d cannot take it as a solid ({status.name}); "
            "repair it first (open or non-manifold edges)",
            role=role,
            status=status.name,
        )
    volume = float(solid.volume())
    if volume <= 0:
        raise MeshInsideOut(f"{role}: its normals point inwards (volume {volume:.3f} mm³); repair it first", role=role)
    return solid, volume


def from_arrays(vertices: np.ndarray, faces: np.ndarray) -> manifold3d.Manifold:
    """Mesh64 keeps the float64 coordinates (and is no slower than the float32 Mesh). The binding
    takes only writeable C-ordered arrays (manifold3d's own outputs are read-only views)."""
    return manifold3d.Manifold(
        manifold3d.Mesh64(
            vert_properties=np.require(vertices, dtype=np.float64, requirements=("C", "W")),
            tri_verts=np.require(faces, dtype=np.uint64, requirements=("C", "W")),
        )
    )


def to_trimesh(solid: manifold3d.Manifold) -> trimesh.Trimesh:
    """Copies: manifold3d hands out read-only views, which numpy-taking libraries refuse."""
    out = solid.to_mesh64()
    return make_mesh(np.array(out.vert_properties[:, :3], dtype=np.float64), np.array(out.tri_verts, dtype=np.int64))


def require_nonempty(solid: manifold3d.Manifold, what: str) -> manifold3d.Manifold:
    status = solid.status()
    if status != manifold3d.Error.NoError:
        raise MeshNotManifold(f"{what}: manifold3d failed ({status.name})", status=status.name)
    if solid.is_empty() or solid.num_tri() == 0:
        raise EmptyResult(f"{what} is empty")
    return solid


def solid_report(solid: manifold3d.Manifold) -> dict[str, float | int | bool]:
    """Figures manifold3d knows without a pass over the mesh in Python."""
    return {
        "faces": int(solid.num_tri()),
        "vertices": int(solid.num_vert()),
        "volume_mm3": round(float(solid.volume()), 6),
        "area_mm2": round(float(solid.surface_area()), 6),
        "watertight": True,  # manifold3d's output is a closed 2-manifold whenever its status is NoError
        "genus": int(solid.genus()),
    }


def float32_collisions(vertices: np.ndarray) -> int:
    """Vertices that rounding to float32 (STL, GLB) would make coincide with another one."""
    rounded = np.asarray(vertices, dtype=np.float32)
    order = np.lexsort(rounded.T[::-1])
    ordered = rounded[order]
    return int(np.all(ordered[1:] == ordered[:-1], axis=1).sum())
