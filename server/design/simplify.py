"""Fewer, smoother or finer triangles: quadric decimation (fast-simplification), Taubin smoothing and
refinement to a maximum edge length; each reports whether the result is still watertight.

Quadric decimation can open holes or pinch edges; a decimated mesh of a watertight input is checked
and, if needed, repaired (merge, drop degenerate faces, fill small holes), or refused.
"""

from __future__ import annotations

import threading
from typing import Any

import fast_simplification
import numpy as np
import trimesh
from scipy import sparse

from server.design import topology
from server.design.analyze import face_volumes
from server.design.errors import InvalidDesignParameters, MeshNotWatertight
from server.design.manifolds import solid_report, to_manifold, to_trimesh
from server.design.meshes import MeshResult, make_mesh
from server.design.repair import compact, repair_mesh

# fast-simplification keeps the mesh being simplified in module globals: one call at a time per process
_SIMPLIFY_LOCK = threading.Lock()
MAX_REPAIRED_HOLE_EDGES = 64
REMESH_ATTEMPTS = 6


def decimate(mesh: trimesh.Trimesh, target_faces: int, *, aggressiveness: float = 7.0) -> MeshResult:
    """About `target_faces` triangles (quadric error collapse); the report gives the exact count."""
    faces_in = len(mesh.faces)
    if target_faces < 4:
        raise InvalidDesignParameters("target_faces must be at least 4", field="target_faces")
    report: dict[str, Any] = {"faces_before": faces_in, "target_faces": target_faces, "repaired": False}
    if target_faces >= faces_in:
        report.update(
            faces_after=faces_in, watertight_after=topology.is_watertight(np.asarray(mesh.faces)), unchanged=True
        )
        return MeshResult(meshes={"decimated": mesh}, report=report)
    with _SIMPLIFY_LOCK:
        points, faces = fast_simplification.simplify(
            np.asarray(mesh.vertices, dtype=np.float64),
            np.asarray(mesh.faces),
            target_count=target_faces,
            agg=aggressiveness,
        )
    vertices, faces = compact(points, faces.astype(np.int64))
    watertight = topology.is_watertight(faces)
    if not watertight and topology.is_watertight(np.asarray(mesh.faces)):
        # only now is the input's closedness worth its check: decimation broke it, so repair or refuse
        repaired = repair_mesh(make_mesh(vertices, faces), max_hole_edges=MAX_REPAIRED_HOLE_EDGES)
        if not repaired.report["watertight_after"]:
            raise MeshNotWatertight(
                "decimation opened the mesh and repair could not close it; try more target faces",
                target_faces=target_faces,
            )
        vertices, faces = (
            np.asarray(repaired.meshes["repaired"].vertices),
            np.asarray(repaired.meshes["repaired"].faces),
        )
        report["repaired"] = True
        report["repair"] = repaired.report
        watertight = True
    report.update(faces_after=len(faces), vertices_after=len(vertices), watertight_after=watertight, unchanged=False)
    return MeshResult(meshes={"decimated": make_mesh(vertices, faces)}, report=report)


def smooth(mesh: trimesh.Trimesh, *, iterations: int = 10, lambda_: float = 0.5, mu: float = -0.53) -> MeshResult:
    """Taubin's λ|μ smoothing: a shrinking step then an inflating one, so the volume stays about the
    same (plain Laplacian smoothing shrinks a bone by a visible fraction). Topology is unchanged."""
    if iterations < 0 or not 0 < lambda_ < 1 or not -1 < mu < -lambda_:
        raise InvalidDesignParameters("smoothing needs iterations ≥ 0, 0 < λ < 1 and -1 < μ < -λ", field="lambda")
    vertices, faces = np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces)
    n = len(vertices)
    rows = faces[:, [0, 1, 2, 1, 2, 0]].ravel()
    cols = faces[:, [1, 2, 0, 0, 1, 2]].ravel()
    adjacency = sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tocsr()
    adjacency.data[:] = 1.0  # an edge counts once, however many faces share it
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    mean_of_neighbours = sparse.diags(1.0 / np.maximum(degree, 1.0)) @ adjacency
    smoothed = vertices.copy()
    for _ in range(iterations):
        for factor in (lambda_, mu):
            smoothed += factor * (mean_of_neighbours @ smoothed - smoothed)
    before, after = float(face_volumes(vertices, faces).sum()), float(face_volumes(smoothed, faces).sum())
    report = {
        "iterations": iterations,
        "lambda": lambda_,
        "mu": mu,
        "volume_before_mm3": round(before, 6),
        "volume_after_mm3": round(after, 6),
        "volume_change_percent": round(100.0 * (after - before) / before, 6) if before else None,
        "max_displacement_mm": round(float(np.linalg.norm(smoothed - vertices, axis=1).max(initial=0.0)), 6),
        "watertight_after": topology.is_watertight(faces),
    }
    return MeshResult(meshes={"smoothed": make_mesh(smoothed, faces)}, report=report)


def remesh(mesh: trimesh.Trimesh, *, max_edge_mm: float) -> MeshResult:
    """Split edges until none is longer than `max_edge_mm` (manifold3d's refine: flat, shape kept).

    manifold3d aims at "roughly" the length given and its interior edges can come out longer, so the
    length asked is lowered until the longest edge fits."""
    if max_edge_mm <= 0:
        raise InvalidDesignParameters("max_edge_mm must be > 0", field="max_edge_mm")
    solid = to_manifold(mesh, "mesh")
    asked = max_edge_mm
    for _attempt in range(REMESH_ATTEMPTS):
        refined = solid.refine_to_length(asked)
        out = to_trimesh(refined)
        edge_lengths = np.asarray(out.edges_unique_length)
        if edge_lengths.max(initial=0.0) <= max_edge_mm:
            break
        asked *= 0.95 * max_edge_mm / float(edge_lengths.max())
    report = {
        "faces_before": len(mesh.faces),
        **solid_report(refined),
        "max_edge_mm": round(float(edge_lengths.max(initial=0.0)), 6),
        "mean_edge_mm": round(float(edge_lengths.mean()) if len(edge_lengths) else 0.0, 6),
        "length_asked_mm": round(asked, 6),
    }
    return MeshResult(meshes={"remeshed": out}, report=report)
