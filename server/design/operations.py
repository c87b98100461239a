"""Every design operation as one pure step: artifact bytes + parameters in, artifact bytes + a JSON
report + a provenance record out. A job kind is `run_operation(name, inputs, params)` plus storage;
the command line runs the same function on files.

Deterministic: the same input bytes and parameters give the same output bytes (no randomness, fixed
iteration orders, writers without timestamps), so a re-run can be checked against its record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import trimesh

from server.design import analyze, booleans, cut, guide, mirror, repair, simplify
from server.design.errors import InvalidDesignParameters, UnknownOperation
from server.design.label import GuideLabel
from server.design.manifolds import float32_collisions
from server.design.meshes import MEDIA_TYPES, MeshLimits, MeshResult, export_mesh, load_mesh
from server.design.params import Plane, SphereRegion, Trajectory, mapping, positive, region_from_json
from server.design.provenance import ArtifactRef, Provenance, sha256_hex

DEFAULT_FORMAT = "ply"  # doubles: a stored result reads back exactly (STL's float32 can merge vertices)


@dataclass(frozen=True)
class InputArtifact:
    artifact_id: str | None
    data: bytes
    format: str  # stl | obj | ply | glb | 3mf


@dataclass(frozen=True)
class OutputArtifact:
    role: str
    data: bytes
    format: str
    media_type: str
    sha256: str
    faces: int
    vertices: int
    # STL/GLB only: vertices that coincide once rounded to float32; reading the file back welds them
    # (a collapsed short edge is harmless, a surface touching itself becomes non-manifold: use PLY)
    float32_collisions: int = 0


@dataclass(frozen=True)
class OperationRun:
    operation: str
    outputs: tuple[OutputArtifact, ...]
    report: dict[str, Any]
    provenance: Provenance


@dataclass(frozen=True)
class Operation:
    name: str
    summary: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    normalize: Callable[[Mapping[str, Any]], dict[str, Any]]  # raw → normalized parameters (JSON)
    apply: Callable[[dict[str, trimesh.Trimesh], dict[str, Any]], MeshResult]
    optional_inputs: tuple[str, ...] = ()


def run_operation(
    name: str,
    inputs: Mapping[str, InputArtifact],
    parameters: Mapping[str, Any] | None = None,
    *,
    limits: MeshLimits | None = None,
    output_format: str = DEFAULT_FORMAT,
) -> OperationRun:
    operation = OPERATIONS.get(name)
    if operation is None:
        raise UnknownOperation(f"no design operation {name!r}; one of {', '.join(OPERATIONS)}", operation=name)
    missing = [role for role in operation.inputs if role not in inputs]
    extra = [role for role in inputs if role not in operation.inputs + operation.optional_inputs]
    if missing or extra:
        raise InvalidDesignParameters(
            f"{name} takes inputs {', '.join(operation.inputs + operation.optional_inputs)}; "
            f"missing {missing}, unexpected {extra}",
            field="inputs",
        )
    normalized = operation.normalize(parameters or {})
    meshes = {role: load_mesh(artifact.data, artifact.format, limits) for role, artifact in inputs.items()}
    result = operation.apply(meshes, normalized)
    outputs = tuple(_output(role, mesh, output_format) for role, mesh in result.meshes.items())
    provenance = Provenance(
        operation=f"design.{name}",
        inputs=tuple(
            ArtifactRef(role=role, sha256=sha256_hex(a.data), artifact_id=a.artifact_id, format=a.format)
            for role, a in sorted(inputs.items())
        ),
        parameters=normalized,
        outputs=tuple(ArtifactRef(role=o.role, sha256=o.sha256, format=o.format) for o in outputs),
        report=result.report,
    )
    return OperationRun(name, outputs, result.report, provenance)


def _output(role: str, mesh: trimesh.Trimesh, fmt: str) -> OutputArtifact:
    collisions = float32_collisions(np.asarray(mesh.vertices)) if fmt in ("stl", "glb") else 0
    data = export_mesh(mesh, fmt)
    return OutputArtifact(
        role, data, fmt, MEDIA_TYPES[fmt], sha256_hex(data), len(mesh.faces), len(mesh.vertices), collisions
    )


# --- parameters ------------------------------------------------------------------------------------------


def _fields(raw: Mapping[str, Any], allowed: set[str]) -> Mapping[str, Any]:
    raw = mapping(raw, "parameters")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise InvalidDesignParameters(
            f"unknown parameters {unknown}; expected some of {sorted(allowed)}", field=unknown[0]
        )
    return raw


def _integer(value: Any, field: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value or value < minimum:
        raise InvalidDesignParameters(f"{field}: expected an integer ≥ {minimum}, got {value!r}", field=field)
    return int(value)


def _analyze_params(raw: Mapping[str, Any]) -> dict[str, Any]:
    raw = _fields(raw, {"thickness_samples"})
    return {"thickness_samples": _integer(raw.get("thickness_samples", 256), "thickness_samples", 0)}


def _repair_params(raw: Mapping[str, Any]) -> dict[str, Any]:
    raw = _fields(raw, {"merge_tolerance_mm", "fill_holes", "max_hole_edges", "keep", "min_component_volume_mm3"})
    keep = raw.get("keep", "all")
    if not (keep in ("all", "largest") or (isinstance(keep, list) and all(isinstance(i, int) for i in keep))):
        raise InvalidDesignParameters("keep: 'all', 'largest' or a list of component indices", field="keep")
    return {
        "merge_tolerance_mm": positive(raw.get("merge_tolerance_mm", 1e-6), "merge_tolerance_mm"),
        "fill_holes": bool(raw.get("fill_holes", True)),
        "max_hole_edges": _integer(raw.get("max_hole_edges", 2000), "max_hole_edges", 3),
        "keep": sorted(set(keep)) if isinstance(keep, list) else keep,
        "min_component_volume_mm3": positive(
            raw.get("min_component_volume_mm3", 0.0), "min_component_volume_mm3", allow_zero=True
        ),
    }


def _cut_params(raw: Mapping[str, Any]) -> dict[str, Any]:
    raw = _fields(raw, {"plane"})
    return {"plane": Plane.from_json(raw.get("plane")).to_json()}


def _wedge_params(raw: Mapping[str, Any]) -> dict[str, Any]:
    raw = _fields(raw, {"planes"})
    planes = raw.get("planes")
    if not isinstance(planes, list) or len(planes) != 2:
        raise InvalidDesignParameters("planes: expected two planes", field="planes")
    return {"planes": [Plane.from_json(p, f"planes[{i}]").to_json() for i, p in enumerate(planes)]}


def _mirror_params(raw: Mapping[str, Any]) -> dict[str, Any]:
    raw = _fields(raw, {"plane", "region", "max_iterations", "max_distance_mm", "max_points"})
    region = raw.get("region")
    parsed = region_from_json(region) if region is not None else None
    if parsed is not None and not isinstance(parsed, SphereRegion):
        raise InvalidDesignParameters("region: alignment takes a sphere region", field="region")
    distance = raw.get("max_distance_mm")
    return {
        "plane": Plane.from_json(raw.get("plane")).to_json(),
        "region": parsed.to_json() if parsed else None,
        "max_iterations": _integer(raw.get("max_iterations", 100), "max_iterations", 1),
        "max_distance_mm": positive(distance, "max_distance_mm") if distance is not None else None,
        "max_points": _integer(raw.get("max_points", 20_000), "max_points", 3),
    }


def _boolean_params(raw: Mapping[str, Any]) -> dict[str, Any]:
    raw = _fields(raw, {"op"})
    if raw.get("op") not in booleans.BOOLEAN_OPS:
        raise InvalidDesignParameters(f"op: one of {', '.join(booleans.BOOLEAN_OPS)}", field="op")
    return {"op": raw["op"]}


def _guide_params(raw: Mapping[str, Any]) -> dict[str, Any]:
    settings = set(guide.GuideParameters.__dataclass_fields__)
    raw = _fields(raw, {"region", "trajectories", "label"} | settings)
    trajectories = raw.get("trajectories")
    if not isinstance(trajectories, list) or not trajectories:
        raise InvalidDesignParameters("trajectories: expected a list of at least one trajectory", field="trajectories")
    values = {k: raw[k] for k in settings if k in raw}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidDesignParameters(f"{key}: expected a number", field=key)
    label = raw.get("label")
    return {
        "region": region_from_json(raw.get("region")).to_json(),
        "trajectories": [Trajectory.from_json(t, f"trajectories[{i}]").to_json() for i, t in enumerate(trajectories)],
        **guide.GuideParameters(**{k: float(v) for k, v in values.items()}).to_json(),
        "label": GuideLabel.from_json(label).to_json() if label is not None else None,
    }


def _decimate_params(raw: Mapping[str, Any]) -> dict[str, Any]:
    raw = _fields(raw, {"target_faces", "aggressiveness"})
    return {
        "target_faces": _integer(raw.get("target_faces"), "target_faces", 4),
        "aggressiveness": positive(raw.get("aggressiveness", 7.0), "aggressiveness", allow_zero=True),
    }


def _smooth_params(raw: Mapping[str, Any]) -> dict[str, Any]:
    raw = _fields(raw, {"iterations", "lambda", "mu"})
    return {
        "iterations": _integer(raw.get("iterations", 10), "iterations", 0),
        "lambda": float(raw.get("lambda", 0.5)),
        "mu": float(raw.get("mu", -0.53)),
    }


def _remesh_params(raw: Mapping[str, Any]) -> dict[str, Any]:
    raw = _fields(raw, {"max_edge_mm"})
    return {"max_edge_mm": positive(raw.get("max_edge_mm"), "max_edge_mm")}


# --- operations ------------------------------------------------------------------------------------------


def _analyze(m: dict[str, trimesh.Trimesh], p: dict[str, Any]) -> MeshResult:
    return MeshResult(meshes={}, report=analyze.analyze_mesh(m["mesh"], thickness_samples=p["thickness_samples"]))


def _mirror(m: dict[str, trimesh.Trimesh], p: dict[str, Any]) -> MeshResult:
    region = region_from_json(p["region"]) if p["region"] else None
    return mirror.mirror_and_align(
        m["mesh"],
        Plane.from_json(p["plane"]),
        m.get("target"),
        region=region if isinstance(region, SphereRegion) else None,
        max_iterations=p["max_iterations"],
        max_distance_mm=p["max_distance_mm"],
        max_points=p["max_points"],
    )


def _guide(m: dict[str, trimesh.Trimesh], p: dict[str, Any]) -> MeshResult:
    settings = {k: p[k] for k in guide.GuideParameters.__dataclass_fields__}
    return guide.make_guide(
        m["bone"],
        region_from_json(p["region"]),
        [Trajectory.from_json(t) for t in p["trajectories"]],
        guide.GuideParameters(**settings),
        GuideLabel.from_json(p["label"]) if p["label"] else None,
    )


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation(
            "analyze",
            "watertight, manifold, volume, components, self-intersections, wall thickness",
            ("mesh",),
            (),
            _analyze_params,
            _analyze,
        ),
        Operation(
            "repair",
            "merge vertices, drop degenerate and duplicate faces, fix winding and normals, fill holes, keep components",
            ("mesh",),
            ("repaired",),
            _repair_params,
            lambda m, p: repair.repair_mesh(m["mesh"], **p),
        ),
        Operation(
            "cut",
            "plane cut, both sides capped",
            ("mesh",),
            ("positive", "negative"),
            _cut_params,
            lambda m, p: cut.plane_cut(m["mesh"], Plane.from_json(p["plane"])),
        ),
        Operation(
            "wedge",
            "wedge resection between two planes (normals point into the wedge)",
            ("mesh",),
            ("wedge", "remaining"),
            _wedge_params,
            lambda m, p: cut.wedge_cut(m["mesh"], *(Plane.from_json(q) for q in p["planes"])),
        ),
        Operation(
            "mirror",
            "mirror across a plane, optionally ICP onto a target",
            ("mesh",),
            ("mirrored",),
            _mirror_params,
            _mirror,
            ("target",),
        ),
        Operation(
            "boolean",
            "union, difference or intersection",
            ("a", "b"),
            ("result",),
            _boolean_params,
            lambda m, p: booleans.boolean(p["op"], m["a"], m["b"]),
        ),
        Operation(
            "guide", "patient-specific guide plate with drill sleeves", ("bone",), ("guide",), _guide_params, _guide
        ),
        Operation(
            "decimate",
            "quadric decimation to a face count, kept watertight",
            ("mesh",),
            ("decimated",),
            _decimate_params,
            lambda m, p: simplify.decimate(m["mesh"], p["target_faces"], aggressiveness=p["aggressiveness"]),
        ),
        Operation(
            "smooth",
            "Taubin smoothing (volume-preserving)",
            ("mesh",),
            ("smoothed",),
            _smooth_params,
            lambda m, p: simplify.smooth(m["mesh"], iterations=p["iterations"], lambda_=p["lambda"], mu=p["mu"]),
        ),
        Operation(
            "remesh",
            "split edges to a maximum length",
            ("mesh",),
            ("remeshed",),
            _remesh_params,
            lambda m, p: simplify.remesh(m["mesh"], max_edge_mm=p["max_edge_mm"]),
        ),
    )
}
