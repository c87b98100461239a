"""Repair reports what it changed, and leaves a closed, outward, consistently wound mesh."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from server.design.errors import InvalidDesignParameters
from server.design.meshes import make_mesh
from server.design.repair import repair_mesh
from server.design.topology import is_watertight
from tests.unit.design.shapes import sphere


def _broken(bone: trimesh.Trimesh) -> tuple[trimesh.Trimesh, dict[str, int]]:
    """The bone with known damage: flipped faces, two holes, duplicates, degenerate faces and a seam of
    split vertices (as a per-triangle STL writer without welding leaves them)."""
    vertices, faces = np.asarray(bone.vertices).copy(), np.asarray(bone.faces).copy()
    flipped = [10, 500, 1000, 7000, 20000]
    faces[flipped] = faces[flipped][:, ::-1]
    # two holes: a face, and a face with its three neighbours (one fan of four faces)
    neighbours = np.flatnonzero(np.isin(faces, faces[3000]).sum(axis=1) == 2)[:3]
    holes = [15000, 3000, *neighbours.tolist()]
    kept = np.delete(np.arange(len(faces)), holes)
    faces = faces[kept]
    duplicates = faces[[100, 200, 300]][:, [1, 2, 0]]  # same faces, rotated
    degenerate = np.array([[5, 5, 6], [7, 8, 7]])
    faces = np.vstack([faces, duplicates, degenerate])
    # vertex 42 split into a copy used by one of its faces
    user = int(np.flatnonzero((faces == 42).any(axis=1))[0])
    vertices = np.vstack([vertices, vertices[42]])
    faces[user][faces[user] == 42] = len(vertices) - 1
    expected = {
        "faces_flipped": len(flipped),
        "holes_filled": 2,
        "duplicate_faces_removed": 3,
        "degenerate_faces_removed": 2,
        "vertices_merged": 1,
    }
    return make_mesh(vertices, faces), expected


def test_repair_counts_each_kind_of_damage_and_closes_the_mesh(bone: trimesh.Trimesh) -> None:
    broken, expected = _broken(bone)
    assert not is_watertight(np.asarray(broken.faces))
    report = repair_mesh(broken).report
    for key, count in expected.items():
        assert report[key] == count, key
    assert report["watertight_before"] is False
    assert report["watertight_after"] is True
    assert report["winding_conflicts"] == report["nonmanifold_edges"] == 0
    assert report["volume_mm3"] == pytest.approx(bone.volume, rel=2e-3)  # the fills are flat patches


def test_repair_of_a_sound_mesh_changes_nothing(bone: trimesh.Trimesh) -> None:
    result = repair_mesh(bone)
    counts = (
        "vertices_merged",
        "degenerate_faces_removed",
        "duplicate_faces_removed",
        "faces_flipped",
        "holes_filled",
        "components_inverted",
        "components_removed",
    )
    assert all(result.report[key] == 0 for key in counts)
    assert np.array_equal(result.meshes["repaired"].faces, bone.faces)
    assert np.array_equal(result.meshes["repaired"].vertices, bone.vertices)


def test_inside_out_mesh_is_turned_outward(bone: trimesh.Trimesh) -> None:
    inverted = make_mesh(bone.vertices, np.asarray(bone.faces)[:, ::-1])
    result = repair_mesh(inverted)
    assert result.report["components_inverted"] == 1
    assert result.meshes["repaired"].volume == pytest.approx(bone.volume)


def test_a_cavity_keeps_its_inward_normals() -> None:
    outer, cavity = sphere(10.0), sphere(4.0)
    inward = make_mesh(cavity.vertices, np.asarray(cavity.faces)[:, ::-1])
    result = repair_mesh(trimesh.util.concatenate([outer, inward]))
    assert result.report["components_inverted"] == 0
    assert result.meshes["repaired"].volume == pytest.approx(outer.volume - cavity.volume)


def test_keep_largest_and_minimum_volume_drop_fragments(bone: trimesh.Trimesh) -> None:
    fragments = [sphere(1.0, (60.0, 0.0, 0.0), subdivisions=1), sphere(2.0, (-60.0, 0.0, 0.0), subdivisions=1)]
    messy = trimesh.util.concatenate([bone, *fragments])
    largest = repair_mesh(messy, keep="largest")
    assert largest.report["components_removed"] == 2
    assert largest.meshes["repaired"].volume == pytest.approx(bone.volume)
    by_volume = repair_mesh(messy, min_component_volume_mm3=10.0)
    assert by_volume.report["components_removed"] == 1  # the 1 mm ball (≈ 4 mm³) goes, the 2 mm one stays
    by_index = repair_mesh(messy, keep=[0, 2])
    assert by_index.meshes["repaired"].volume == pytest.approx(bone.volume + fragments[0].volume)


def test_keep_rejects_indices_that_do_not_exist(bone: trimesh.Trimesh) -> None:
    with pytest.raises(InvalidDesignParameters):
        repair_mesh(bone, keep=[3])
