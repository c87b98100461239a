"""Mirroring keeps the solid outward; ICP recovers a known rigid motion."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from server.design.meshes import make_mesh
from server.design.mirror import icp, mirror_and_align, mirror_mesh, reflect_points
from server.design.params import Plane, SphereRegion
from server.design.topology import is_watertight

MID_SAGITTAL = Plane((2.0, -1.0, 0.0), (0.98, 0.1, -0.17))  # oblique, off the origin


def _rigid(angle_deg: float, axis: tuple[float, float, float], shift: tuple[float, float, float]) -> np.ndarray:
    axis_unit = np.asarray(axis) / np.linalg.norm(axis)
    transform = trimesh.transformations.rotation_matrix(np.radians(angle_deg), axis_unit)
    transform[:3, 3] = shift
    return transform


def _moved(mesh: trimesh.Trimesh, transform: np.ndarray) -> trimesh.Trimesh:
    return make_mesh(np.asarray(mesh.vertices) @ transform[:3, :3].T + transform[:3, 3], np.asarray(mesh.faces))


def test_mirror_maps_every_vertex_to_its_reflection_and_keeps_volume(bone: trimesh.Trimesh) -> None:
    mirrored = mirror_mesh(bone, MID_SAGITTAL)
    vertices, normal = np.asarray(bone.vertices), np.asarray(MID_SAGITTAL.normal_lps)
    # vertex i goes to its reflection: the midpoint is on the plane and the offset is along the normal
    midpoints = (vertices + np.asarray(mirrored.vertices)) / 2
    assert np.abs((midpoints - MID_SAGITTAL.point_lps) @ normal).max() < 1e-9
    offsets = np.asarray(mirrored.vertices) - vertices
    assert np.abs(np.cross(offsets, normal)).max() < 1e-9
    assert mirrored.volume == pytest.approx(bone.volume, rel=1e-12)  # positive: normals still outward
    assert is_watertight(np.asarray(mirrored.faces))
    twice = mirror_mesh(mirrored, MID_SAGITTAL)
    assert np.abs(np.asarray(twice.vertices) - vertices).max() < 1e-9
    assert np.array_equal(twice.faces, bone.faces)


def test_the_mirrored_bone_is_not_the_bone(bone: trimesh.Trimesh) -> None:
    """The phantom is asymmetric, so a mirror that did nothing would be caught by the tests above."""
    mirrored = mirror_mesh(bone, Plane((0.0, 0.0, 0.0), (1.0, 0.0, 0.0)))
    assert np.abs(mirrored.bounds - bone.bounds).max() > 1.0


def test_icp_recovers_a_known_rigid_transform(bone: trimesh.Trimesh) -> None:
    truth = _rigid(4.0, (0.2, 1.0, 0.3), (1.5, -2.0, 1.0))
    target = np.asarray(bone.vertices)
    moving = target @ truth[:3, :3].T + truth[:3, 3]
    alignment = icp(moving, target, max_iterations=200)
    recovered = alignment.transform @ truth
    assert np.abs(recovered[:3, :3] - np.eye(3)).max() < 1e-6
    assert np.abs(recovered[:3, 3]).max() < 1e-5
    assert alignment.rms_before_mm > 1.0 and alignment.rms_after_mm < 1e-5
    assert alignment.converged


@pytest.mark.parametrize(
    ("region", "max_distance_mm"),
    [(None, None), (SphereRegion((0.0, 0.0, -50.0), 35.0), 3.0)],
    ids=["whole", "condyles"],
)
def test_mirror_and_align_lands_on_the_target(
    bone: trimesh.Trimesh, region: SphereRegion | None, max_distance_mm: float | None
) -> None:
    """The healthy side mirrored, then placed onto a target that is that mirror image moved (as the
    patient's other side never sits exactly symmetric); matched on the whole target, or only on the
    target's condyles (distinct shapes: a bare shaft would let ICP slide along its axis)."""
    plane = Plane((0.0, 0.0, 0.0), (1.0, 0.0, 0.0))
    offset = _rigid(3.0, (0.0, 0.3, 1.0), (1.0, 0.5, -0.8))
    target = _moved(mirror_mesh(bone, plane), offset)
    result = mirror_and_align(bone, plane, target, region=region, max_distance_mm=max_distance_mm)
    alignment = result.report["alignment"]
    assert alignment["rms_after_mm"] < 1e-4 < alignment["rms_before_mm"]
    assert np.allclose(np.asarray(alignment["transform"]), offset, atol=1e-5)
    moved = result.meshes["mirrored"]
    assert np.abs(np.asarray(moved.vertices) - np.asarray(target.vertices)).max() < 1e-4
    assert moved.volume == pytest.approx(bone.volume)


def test_reflect_points_is_an_involution() -> None:
    points = np.random.default_rng(3).normal(size=(100, 3)) * 50
    assert np.allclose(reflect_points(reflect_points(points, MID_SAGITTAL), MID_SAGITTAL), points, atol=1e-12)
