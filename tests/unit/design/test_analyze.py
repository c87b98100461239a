"""The analysis report: closedness, manifoldness, size, components, self-intersections, wall thickness."""

from __future__ import annotations

import math

import numpy as np
import trimesh

from server.design.analyze import analyze_mesh
from server.design.meshes import make_mesh
from tests.unit.design.shapes import box, sphere


def test_a_closed_bone_reports_watertight_manifold_one_component(bone: trimesh.Trimesh) -> None:
    report = analyze_mesh(bone, thickness_samples=64)
    assert report["watertight"] and report["edge_manifold"] and report["vertex_manifold"]
    assert report["boundary_edges"] == report["nonmanifold_edges"] == report["winding_conflicts"] == 0
    assert report["components"] == 1
    assert report["volume_mm3"] == round(float(bone.volume), 6)
    assert report["area_mm2"] == round(float(bone.area), 6)
    assert report["self_intersections"]["pairs"] == 0
    assert report["bbox_min_lps"] == [round(float(v), 6) for v in bone.bounds[0]]


def test_open_mesh_reports_its_boundary() -> None:
    ball = sphere(10.0)
    opened = make_mesh(ball.vertices, np.asarray(ball.faces)[3:])  # three faces removed
    report = analyze_mesh(opened, thickness_samples=0)
    assert not report["watertight"]
    assert report["boundary_edges"] > 0
    assert report["wall_thickness"] is None


def test_two_cubes_touching_at_a_corner_are_vertex_non_manifold() -> None:
    a, b = box((1.0, 1.0, 1.0)), box((1.0, 1.0, 1.0), (1.0, 1.0, 1.0))
    both = trimesh.util.concatenate([a, b])
    vertices, inverse = np.unique(np.round(np.asarray(both.vertices), 9), axis=0, return_inverse=True)
    report = analyze_mesh(make_mesh(vertices, inverse.ravel()[np.asarray(both.faces)]), thickness_samples=0)
    assert report["edge_manifold"]
    assert not report["vertex_manifold"]
    assert report["nonmanifold_vertices"] == 1


def test_an_edge_shared_by_three_faces_is_non_manifold() -> None:
    ball = sphere(10.0, subdivisions=1)
    a, b = np.asarray(ball.faces)[0, :2]
    fin = make_mesh(
        np.vstack([ball.vertices, [[0.0, 0.0, 30.0]]]), np.vstack([ball.faces, [[a, b, len(ball.vertices)]]])
    )
    report = analyze_mesh(fin, thickness_samples=0)
    assert report["nonmanifold_edges"] == 1
    assert not report["edge_manifold"] and not report["watertight"]


def test_overlapping_shells_are_found_to_self_intersect() -> None:
    a, b = sphere(10.0), sphere(10.0, (7.3, 0.41, -0.23))
    report = analyze_mesh(trimesh.util.concatenate([a, b]), thickness_samples=0)
    crossings = report["self_intersections"]
    assert crossings["pairs"] > 20 and not crossings["estimated"]
    assert report["components"] == 2
    # every crossing face lies near the circle where the spheres meet
    assert crossings["faces_involved"] <= 0.25 * (len(a.faces) + len(b.faces))


def test_self_intersection_count_is_estimated_from_a_subset_when_asked() -> None:
    a, b = sphere(10.0), sphere(10.0, (7.3, 0.41, -0.23))
    full = analyze_mesh(trimesh.util.concatenate([a, b]), thickness_samples=0)["self_intersections"]
    from server.design.analyze import self_intersections

    both = trimesh.util.concatenate([a, b])
    sampled = self_intersections(
        np.asarray(both.vertices), np.asarray(both.faces), max_pairs=full["candidate_pairs"] // 2
    )
    assert sampled["estimated"]
    assert 0.5 * full["pairs"] <= sampled["pairs"] <= 1.5 * full["pairs"]


def test_wall_thickness_of_a_hollow_ball_is_its_shell() -> None:
    outer, inner = sphere(10.0, subdivisions=4), sphere(8.0, subdivisions=4)
    shell = trimesh.util.concatenate([outer, make_mesh(inner.vertices, np.asarray(inner.faces)[:, ::-1])])
    report = analyze_mesh(shell, thickness_samples=200)
    thickness = report["wall_thickness"]
    assert report["watertight"] and report["components"] == 2
    assert math.isclose(report["volume_mm3"], outer.volume - inner.volume, rel_tol=1e-9)
    assert thickness["min_mm"] > 1.9 and thickness["min_mm"] <= thickness["median_mm"] < 2.2  # the 2 mm wall
