"""Resection: a plane cut with both sides capped, and a wedge between two planes.

manifold3d cuts and caps exactly (its split keeps every piece a closed 2-manifold), where trimesh's
capped slice can leave open meshes. The pieces' volumes add up to the input's to rounding.
"""

from __future__ import annotations

import manifold3d
import numpy as np
import trimesh

from server.design.errors import EmptyResult, InvalidDesignParameters
from server.design.manifolds import require_nonempty, solid_report, to_manifold_measured, to_trimesh
from server.design.meshes import MeshResult
from server.design.params import Plane


def plane_cut(mesh: trimesh.Trimesh, plane: Plane) -> MeshResult:
    """Two capped pieces: `positive` (the side the normal points to) and `negative`."""
    solid, volume = to_manifold_measured(mesh, "mesh")
    positive, negative = solid.split_by_plane(plane.normal_lps, plane.offset_mm)
    for name, piece in (("positive", positive), ("negative", negative)):
        if piece.is_empty():
            raise EmptyResult(f"the plane misses the mesh: nothing on its {name} side", side=name)
        require_nonempty(piece, f"the {name} piece")
    pieces = {"positive": positive, "negative": negative}
    figures = {name: solid_report(piece) for name, piece in pieces.items()}
    # the cut faces appear once on each piece: the area the pieces gained, halved
    cap_area = (sum(f["area_mm2"] for f in figures.values()) - float(solid.surface_area())) / 2
    return MeshResult(
        meshes={name: to_trimesh(piece) for name, piece in pieces.items()},
        report={
            "input": {"faces": int(solid.num_tri()), "volume_mm3": round(volume, 6)},
            **figures,
            "cap_area_mm2": round(cap_area, 6),
            "volume_change_mm3": round(sum(f["volume_mm3"] for f in figures.values()) - volume, 6) + 0.0,
        },
    )


def wedge_cut(mesh: trimesh.Trimesh, plane_a: Plane, plane_b: Plane) -> MeshResult:
    """The wedge between two planes (the bone on the side both normals point to) and the rest.

    Both are made against one convex cutter (a box bigger than the mesh, trimmed by the two planes), so
    the wedge and the remaining bone meet on exactly the same faces.
    """
    solid, volume = to_manifold_measured(mesh, "mesh")
    cutter = _half_space_cutter(solid, (plane_a, plane_b))
    if cutter.is_empty():
        raise InvalidDesignParameters("the two planes leave no wedge (their positive sides do not overlap)")
    wedge, remaining = solid.split(cutter)
    if wedge.is_empty():
        raise EmptyResult("the wedge misses the mesh")
    if remaining.is_empty():
        raise EmptyResult("the wedge takes the whole mesh")
    require_nonempty(wedge, "the wedge")
    require_nonempty(remaining, "the remaining bone")
    figures = {"wedge": solid_report(wedge), "remaining": solid_report(remaining)}
    return MeshResult(
        meshes={"wedge": to_trimesh(wedge), "remaining": to_trimesh(remaining)},
        report={
            "input": {"faces": int(solid.num_tri()), "volume_mm3": round(volume, 6)},
            "wedge": figures["wedge"],
            "remaining": {**figures["remaining"], "components": len(remaining.decompose())},
            "angle_deg": round(
                float(np.degrees(np.arccos(np.clip(-np.dot(plane_a.normal_lps, plane_b.normal_lps), -1, 1)))), 6
            ),
            "volume_change_mm3": round(sum(f["volume_mm3"] for f in figures.values()) - volume, 6) + 0.0,
        },
    )


def _half_space_cutter(solid: manifold3d.Manifold, planes: tuple[Plane, ...]) -> manifold3d.Manifold:
    low, high = np.asarray(solid.bounding_box()[:3]), np.asarray(solid.bounding_box()[3:])
    margin = float(np.linalg.norm(high - low)) + 1.0
    box = manifold3d.Manifold.cube(tuple(high - low + 2 * margin)).translate(tuple(low - margin))
    for plane in planes:
        box = box.trim_by_plane(plane.normal_lps, plane.offset_mm)
    return box
