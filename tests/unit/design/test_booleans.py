"""Booleans on bone-like solids satisfy inclusion-exclusion and refuse what manifold3d would empty."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from server.design.booleans import boolean
from server.design.errors import EmptyResult, InvalidDesignParameters, MeshNotManifold
from server.design.meshes import make_mesh
from server.design.topology import is_watertight
from tests.unit.design.shapes import sphere


@pytest.fixture(scope="module")
def implant(marching_cubes_bone: trimesh.Trimesh) -> trimesh.Trimesh:
    """A second non-trivial solid: the marching-cubes bone, turned and moved to overlap the first."""
    angle = np.radians(25.0)
    rotation = np.array([[np.cos(angle), 0.0, np.sin(angle)], [0.0, 1.0, 0.0], [-np.sin(angle), 0.0, np.cos(angle)]])
    vertices = np.asarray(marching_cubes_bone.vertices) @ rotation.T + np.array([6.0, 3.0, 20.0])
    return make_mesh(vertices, np.asarray(marching_cubes_bone.faces))


def test_volumes_satisfy_inclusion_exclusion(bone: trimesh.Trimesh, implant: trimesh.Trimesh) -> None:
    union = boolean("union", bone, implant).meshes["result"]
    intersection = boolean("intersection", bone, implant).meshes["result"]
    difference = boolean("difference", bone, implant).meshes["result"]
    for result in (union, intersection, difference):
        assert is_watertight(np.asarray(result.faces)) and result.volume > 0
    tolerance = 1e-6 * (bone.volume + implant.volume)
    assert abs(union.volume + intersection.volume - bone.volume - implant.volume) < tolerance
    assert abs(difference.volume - (bone.volume - intersection.volume)) < tolerance
    assert 0.05 * bone.volume < intersection.volume < 0.95 * bone.volume  # a real overlap, not a touch


def test_report_gives_the_inputs_and_the_result(bone: trimesh.Trimesh, implant: trimesh.Trimesh) -> None:
    report = boolean("difference", bone, implant).report
    assert report["op"] == "difference"
    assert report["a"]["faces"] == len(bone.faces)
    assert report["result"]["watertight"] and not report["result"]["empty"]


def test_disjoint_intersection_is_an_empty_result_unless_allowed(bone: trimesh.Trimesh) -> None:
    far = sphere(5.0, (200.0, 0.0, 0.0))
    with pytest.raises(EmptyResult):
        boolean("intersection", bone, far)
    allowed = boolean("intersection", bone, far, allow_empty=True)
    assert allowed.report["result"]["empty"] and len(allowed.meshes["result"].faces) == 0


def test_non_manifold_input_is_refused(bone: trimesh.Trimesh) -> None:
    opened = make_mesh(bone.vertices, np.asarray(bone.faces)[5:])
    with pytest.raises(MeshNotManifold) as caught:
        boolean("union", sphere(5.0), opened)
    assert caught.value.details["role"] == "b"


def test_unknown_operation_is_invalid(bone: trimesh.Trimesh) -> None:
    with pytest.raises(InvalidDesignParameters):
        boolean("xor", bone, bone)
