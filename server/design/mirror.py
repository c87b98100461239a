"""Mirror across a plane (rebuild a defect from the healthy side), then align the mirrored part onto the
defect's surroundings with rigid ICP."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from server.design.errors import InvalidDesignParameters, MeshEmpty
from server.design.meshes import MeshResult, make_mesh
from server.design.params import Plane, SphereRegion


def reflect_points(points: np.ndarray, plane: Plane) -> np.ndarray:
    normal = np.asarray(plane.normal_lps)
    distance = (points - np.asarray(plane.point_lps)) @ normal
    return points - 2.0 * distance[:, None] * normal


def mirror_mesh(mesh: trimesh.Trimesh, plane: Plane) -> trimesh.Trimesh:
    """A reflection turns the winding inside out; reversing every face keeps the normals outward."""
    return make_mesh(reflect_points(np.asarray(mesh.vertices), plane), np.asarray(mesh.faces)[:, ::-1])


@dataclass(frozen=True)
class Alignment:
    transform: np.ndarray  # (4, 4) rigid, maps the moving points onto the target
    rms_before_mm: float
    rms_after_mm: float
    iterations: int
    converged: bool
    pairs: int  # correspondences used in the last iteration

    def to_json(self) -> dict[str, object]:
        return {
            "transform": [[round(float(v), 12) for v in row] for row in self.transform],
            "rms_before_mm": _finite(self.rms_before_mm),
            "rms_after_mm": _finite(self.rms_after_mm),
            "iterations": self.iterations,
            "converged": self.converged,
            "pairs": self.pairs,
        }


def icp(
    moving: np.ndarray,
    target: np.ndarray,
    *,
    max_iterations: int = 100,
    max_distance_mm: float | None = None,
    tolerance_mm: float = 1e-7,
) -> Alignment:
    """Point-to-point ICP (Kabsch on closest-point pairs, no scaling, no reflection); the transform
    returned moves `moving` onto `target`.

    Each target point is paired with its closest moving point: the target is the partial side (the
    bone around a defect) and the moving, mirrored part the whole one, so every target point has a
    true partner. Pairs farther than `max_distance_mm` are left out. Deterministic: no sampling.
    """
    if len(moving) < 3 or len(target) < 3:
        raise MeshEmpty("ICP needs at least three points on each side")
    tree = cKDTree(moving)
    onto_moving = np.eye(4)  # target → moving; inverted at the end
    current = target.copy()
    rms_before = rms = _rms(tree.query(current)[0], max_distance_mm)
    converged, iterations, pairs = False, 0, 0
    while iterations < max_iterations:
        iterations += 1
        distances, index = tree.query(current)
        keep = distances <= max_distance_mm if max_distance_mm is not None else np.ones(len(current), dtype=bool)
        pairs = int(keep.sum())
        if pairs < 3:
            raise InvalidDesignParameters(
                "ICP: fewer than three point pairs within max_distance_mm", field="max_distance_mm"
            )
        step = _kabsch(current[keep], moving[index[keep]])
        current = current @ step[:3, :3].T + step[:3, 3]
        onto_moving = step @ onto_moving
        new_rms = _rms(tree.query(current)[0], max_distance_mm)
        if abs(rms - new_rms) < tolerance_mm:
            rms, converged = new_rms, True
            break
        rms = new_rms
    return Alignment(_rigid_inverse(onto_moving), rms_before, rms, iterations, converged, pairs)


def _rigid_inverse(transform: np.ndarray) -> np.ndarray:
    inverse = np.eye(4)
    inverse[:3, :3] = transform[:3, :3].T
    inverse[:3, 3] = -transform[:3, :3].T @ transform[:3, 3]
    return inverse


def _finite(value: float) -> float | None:
    return round(value, 6) if np.isfinite(value) else None  # JSON has no infinity


def _rms(distances: np.ndarray, max_distance_mm: float | None) -> float:
    if max_distance_mm is not None:
        distances = distances[distances <= max_distance_mm]
    return float(np.sqrt(np.mean(distances**2))) if len(distances) else float("inf")


def _kabsch(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    u, _s, vt = np.linalg.svd((source - source_mean).T @ (target - target_mean))
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    rotation = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    step = np.eye(4)
    step[:3, :3] = rotation
    step[:3, 3] = target_mean - rotation @ source_mean
    return step


def _even_sample(points: np.ndarray, max_points: int) -> np.ndarray:
    if len(points) <= max_points:
        return points
    return points[np.linspace(0, len(points) - 1, max_points).round().astype(np.int64)]


def mirror_and_align(
    mesh: trimesh.Trimesh,
    plane: Plane,
    target: trimesh.Trimesh | None = None,
    *,
    region: SphereRegion | None = None,
    max_iterations: int = 100,
    max_distance_mm: float | None = None,
    max_points: int = 20_000,
) -> MeshResult:
    """The mirrored mesh as `mirrored`; with a `target`, moved by ICP onto it (only the target's vertices
    inside `region`, when given, are matched, e.g. the bone around the defect)."""
    mirrored = mirror_mesh(mesh, plane)
    report: dict[str, object] = {"volume_mm3": round(float(mirrored.volume), 6), "faces": len(mirrored.faces)}
    if target is None:
        return MeshResult(meshes={"mirrored": mirrored}, report=report)
    target_points = np.asarray(target.vertices)
    moving_points = np.asarray(mirrored.vertices)
    if region is not None:  # match only the target around the defect; the mirrored part stays whole
        center = np.asarray(region.center_lps)
        target_points = target_points[np.linalg.norm(target_points - center, axis=1) <= region.radius_mm]
    alignment = icp(
        _even_sample(moving_points, max_points),
        _even_sample(target_points, max_points),
        max_iterations=max_iterations,
        max_distance_mm=max_distance_mm,
    )
    vertices = np.asarray(mirrored.vertices) @ alignment.transform[:3, :3].T + alignment.transform[:3, 3]
    aligned = make_mesh(vertices, np.asarray(mirrored.faces))
    report["alignment"] = alignment.to_json()
    return MeshResult(meshes={"mirrored": aligned}, report=report)
