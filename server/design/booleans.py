"""Union, difference and intersection of two solids with manifold3d (exact, robust on coplanar faces)."""

from __future__ import annotations

from typing import Literal

import manifold3d
import trimesh

from server.design.errors import EmptyResult, InvalidDesignParameters
from server.design.manifolds import require_nonempty, solid_report, to_manifold_measured, to_trimesh
from server.design.meshes import MeshResult

BooleanOp = Literal["union", "difference", "intersection"]
BOOLEAN_OPS: tuple[BooleanOp, ...] = ("union", "difference", "intersection")
_OP_TYPES = {
    "union": manifold3d.OpType.Add,
    "difference": manifold3d.OpType.Subtract,
    "intersection": manifold3d.OpType.Intersect,
}


def boolean(op: str, a: trimesh.Trimesh, b: trimesh.Trimesh, *, allow_empty: bool = False) -> MeshResult:
    """Union, difference (a minus b) or intersection as the mesh `result`. An empty result raises
    EmptyResult unless `allow_empty` (then `result` has no faces), so a miss does not pass silently."""
    if op not in _OP_TYPES:
        raise InvalidDesignParameters(f"op: expected one of {', '.join(BOOLEAN_OPS)}, got {op!r}", field="op")
    (solid_a, volume_a), (solid_b, volume_b) = to_manifold_measured(a, "a"), to_manifold_measured(b, "b")
    result = manifold3d.Manifold.batch_boolean([solid_a, solid_b], _OP_TYPES[op])
    report = {
        "op": op,
        "a": {"faces": int(solid_a.num_tri()), "volume_mm3": round(volume_a, 6)},
        "b": {"faces": int(solid_b.num_tri()), "volume_mm3": round(volume_b, 6)},
    }
    if result.is_empty() and result.status() == manifold3d.Error.NoError:
        if not allow_empty:
            raise EmptyResult(f"the {op} of a and b is empty (they do not overlap?)", op=op)
        report["result"] = {"faces": 0, "volume_mm3": 0.0, "empty": True}
        return MeshResult(meshes={"result": to_trimesh(result)}, report=report)
    require_nonempty(result, f"the {op}")
    report["result"] = {**solid_report(result), "empty": False}
    return MeshResult(meshes={"result": to_trimesh(result)}, report=report)
