"""Decimation, smoothing and remeshing keep the solid closed and about the same shape and size."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from server.design.errors import InvalidDesignParameters, MeshNotManifold
from server.design.meshes import make_mesh
from server.design.simplify import decimate, remesh, smooth
from server.design.topology import is_watertight


def test_decimation_reaches_the_target_and_stays_watertight(bone: trimesh.Trimesh) -> None:
    result = decimate(bone, 5000)
    mesh = result.meshes["decimated"]
    assert result.report["faces_after"] == len(mesh.faces) <= 5000
    assert len(mesh.faces) >= 4900
    assert result.report["watertight_after"] and is_watertight(np.asarray(mesh.faces))
    assert mesh.volume == pytest.approx(bone.volume, rel=0.01)
    assert len(np.unique(mesh.faces)) == len(mesh.vertices)  # no unreferenced vertices left behind


def test_decimation_to_more_faces_than_there_are_changes_nothing(bone: trimesh.Trimesh) -> None:
    result = decimate(bone, len(bone.faces) + 10)
    assert result.report["unchanged"] and result.meshes["decimated"] is bone


def test_taubin_smoothing_removes_noise_without_shrinking(bone: trimesh.Trimesh) -> None:
    rng = np.random.default_rng(5)
    normals = np.asarray(bone.vertex_normals)
    noisy = make_mesh(
        np.asarray(bone.vertices) + normals * rng.normal(0.0, 0.15, (len(normals), 1)), np.asarray(bone.faces)
    )
    result = smooth(noisy, iterations=10)
    smoothed = result.meshes["smoothed"]
    # noise along the normals is mostly gone: vertices lie closer to the clean surface than before
    sample = np.arange(0, len(bone.vertices), 5)
    error_before = trimesh.proximity.closest_point(bone, np.asarray(noisy.vertices)[sample])[1].mean()
    error_after = trimesh.proximity.closest_point(bone, np.asarray(smoothed.vertices)[sample])[1].mean()
    assert error_after < 0.5 * error_before
    assert abs(result.report["volume_change_percent"]) < 1.0  # Laplacian smoothing would shrink it visibly
    assert result.report["watertight_after"]


def test_smoothing_parameters_are_checked(bone: trimesh.Trimesh) -> None:
    with pytest.raises(InvalidDesignParameters):
        smooth(bone, lambda_=0.5, mu=-0.4)  # |μ| must exceed λ, or it shrinks


def test_remesh_splits_edges_to_the_maximum_length(union_bone: trimesh.Trimesh) -> None:
    result = remesh(union_bone, max_edge_mm=2.0)
    mesh = result.meshes["remeshed"]
    assert len(mesh.faces) > 2 * len(union_bone.faces)
    assert result.report["max_edge_mm"] <= 2.0
    assert np.asarray(mesh.edges_unique_length).max() <= 2.0
    assert result.report["watertight"] and is_watertight(np.asarray(mesh.faces))
    assert mesh.volume == pytest.approx(union_bone.volume, rel=1e-9)  # flat splits: the shape is unchanged


def test_remesh_refuses_an_open_mesh(bone: trimesh.Trimesh) -> None:
    with pytest.raises(MeshNotManifold):
        remesh(make_mesh(bone.vertices, np.asarray(bone.faces)[1:]), max_edge_mm=1.0)
