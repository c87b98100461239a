"""Plane cuts and wedge resections give closed pieces whose volumes add up to the bone's."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from server.design.cut import plane_cut, wedge_cut
from server.design.errors import EmptyResult, InvalidDesignParameters, MeshInsideOut, MeshNotManifold
from server.design.meshes import make_mesh
from server.design.params import Plane
from server.design.topology import is_watertight

OBLIQUE = Plane((3.0, -1.0, 20.0), (0.3, -0.2, 1.0))


def _signed_distances(mesh: trimesh.Trimesh, plane: Plane) -> np.ndarray:
    return (np.asarray(mesh.vertices) - plane.point_lps) @ np.asarray(plane.normal_lps)


@pytest.mark.parametrize("which", ["bone", "union_bone", "marching_cubes_bone"])
def test_plane_cut_gives_two_closed_pieces_whose_volumes_add_up(which: str, request: pytest.FixtureRequest) -> None:
    mesh: trimesh.Trimesh = request.getfixturevalue(which)
    result = plane_cut(mesh, OBLIQUE)
    positive, negative = result.meshes["positive"], result.meshes["negative"]
    for piece in (positive, negative):
        assert is_watertight(np.asarray(piece.faces))  # our edge check
        assert piece.is_watertight and piece.is_winding_consistent  # and trimesh's
        assert piece.volume > 0
    assert positive.volume + negative.volume == pytest.approx(mesh.volume, rel=1e-3)
    assert abs(positive.volume + negative.volume - mesh.volume) < 1e-6 * mesh.volume  # in fact to rounding
    # each piece is on its side of the plane, and the cap lies in the plane
    assert _signed_distances(positive, OBLIQUE).min() > -1e-6
    assert _signed_distances(negative, OBLIQUE).max() < 1e-6
    assert result.report["cap_area_mm2"] > 300  # the shaft's cross-section, about π·11²


def test_the_cap_area_matches_the_cross_section(bone: trimesh.Trimesh) -> None:
    plane = Plane((0.0, 0.0, 0.0), (0.0, 0.0, 1.0))
    section = bone.section(plane_origin=plane.point_lps, plane_normal=plane.normal_lps)
    planar, _to_3d = section.to_2D()
    assert plane_cut(bone, plane).report["cap_area_mm2"] == pytest.approx(planar.area, rel=1e-6)


def test_a_plane_that_misses_the_bone_is_an_empty_result(bone: trimesh.Trimesh) -> None:
    with pytest.raises(EmptyResult) as caught:
        plane_cut(bone, Plane((0.0, 0.0, 500.0), (0.0, 0.0, 1.0)))
    assert caught.value.details == {"side": "positive"}


def test_an_open_mesh_is_refused_not_silently_emptied(bone: trimesh.Trimesh) -> None:
    opened = make_mesh(bone.vertices, np.asarray(bone.faces)[1:])
    with pytest.raises(MeshNotManifold) as caught:
        plane_cut(opened, OBLIQUE)
    assert caught.value.details["status"] == "NotManifold"


def test_an_inside_out_mesh_is_refused(bone: trimesh.Trimesh) -> None:
    with pytest.raises(MeshInsideOut):
        plane_cut(make_mesh(bone.vertices, np.asarray(bone.faces)[:, ::-1]), OBLIQUE)


@pytest.mark.parametrize("which", ["bone", "marching_cubes_bone"])
def test_wedge_resection_splits_the_bone_into_wedge_and_rest(which: str, request: pytest.FixtureRequest) -> None:
    mesh: trimesh.Trimesh = request.getfixturevalue(which)
    lower = Plane((0.0, 0.0, -5.0), (0.0, 0.15, 1.0))  # normals point into the wedge
    upper = Plane((0.0, 0.0, 8.0), (0.35, 0.0, -1.0))
    result = wedge_cut(mesh, lower, upper)
    wedge, remaining = result.meshes["wedge"], result.meshes["remaining"]
    for piece in (wedge, remaining):
        assert is_watertight(np.asarray(piece.faces)) and piece.volume > 0
    assert wedge.volume + remaining.volume == pytest.approx(mesh.volume, rel=1e-3)
    assert abs(result.report["volume_change_mm3"]) < 1e-6 * mesh.volume
    for plane in (lower, upper):
        assert _signed_distances(wedge, plane).min() > -1e-6
    assert result.report["remaining"]["components"] == 2  # the wedge goes right through the shaft
    expected_angle = np.degrees(np.arccos(-np.dot(lower.normal_lps, upper.normal_lps)))
    assert result.report["angle_deg"] == pytest.approx(expected_angle)


def test_wedge_planes_facing_apart_are_rejected(bone: trimesh.Trimesh) -> None:
    with pytest.raises(InvalidDesignParameters):
        wedge_cut(bone, Plane((0.0, 0.0, 10.0), (0.0, 0.0, 1.0)), Plane((0.0, 0.0, -10.0), (0.0, 0.0, -1.0)))
