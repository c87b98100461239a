"""REST for design: run a mesh operation from a room (inputs are the room case's artifact versions,
planes, trajectories and regions come from the room's annotations or explicit values), upload a mesh
into a case. Parameters are checked here, so a bad request is a 4xx at once, not a failed job."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from server.artifacts import store as artifacts
from server.cases.api import require_case
from server.core import audit
from server.core.auth import new_id
from server.core.errors import Forbidden, Invalid, NotFound
from server.core.jobs import JobSpec, JobView
from server.deps import CurrentPrincipal, client_ip
from server.design.meshes import FORMATS, export_mesh, load_mesh
from server.design.operations import OPERATIONS
from server.design.tasks import mesh_limits
from server.imaging.uploads import spool_multipart
from server.rooms import repository as rooms

router = APIRouter(prefix="/api", tags=["design"])

# Which output continues the input's model (a new version of it) and which starts a model of its own.
CONTINUES = {
    "repair": "repaired",
    "decimate": "decimated",
    "smooth": "smoothed",
    "remesh": "remeshed",
    "cut": "negative",
    "wedge": "remaining",
}
NEW_NAMES = {
    "positive": "{name} (resected)",
    "wedge": "{name} (wedge)",
    "mirrored": "{name} (mirrored)",
    "guide": "Guide for {name}",
    "result": "{name} ({op})",
}


class DesignRequest(BaseModel):
    inputs: dict[str, str] = Field(description="role -> artifact id, e.g. {'mesh': '…'}")
    parameters: dict[str, Any] = Field(default_factory=dict)
    # Annotation ids of the room, resolved into parameters: plane, planes, trajectories, region_marker.
    annotations: dict[str, Any] = Field(default_factory=dict)
    region_radius_mm: float = Field(default=15.0, gt=0, le=200)


def _annotation(state: Any, annotation_id: Any, kind: str) -> dict[str, Any]:
    found = state.annotations.get(annotation_id) if isinstance(annotation_id, str) else None
    if not found or found.get("deleted"):
        raise Invalid(f"no annotation {annotation_id!r} in this room")
    if found["kind"] != kind:
        raise Invalid(f"annotation {annotation_id!r} is a {found['kind']}, not a {kind}")
    return found  # type: ignore[no-any-return]


def resolve_annotations(state: Any, body: DesignRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    """Annotation references → operation parameters, plus which versions were used (for provenance)."""
    params = dict(body.parameters)
    used: dict[str, Any] = {}

    def plane(ref: Any) -> dict[str, Any]:
        a = _annotation(state, ref, "plane")
        used.setdefault("planes", []).append({"id": a["id"], "version": a.get("version")})
        return {"point_lps": a["data"]["point"], "normal_lps": a["data"]["normal"]}

    refs = body.annotations
    if "plane" in refs:
        params["plane"] = plane(refs["plane"])
    if "planes" in refs:
        params["planes"] = [plane(ref) for ref in refs["planes"]]
    if "trajectories" in refs:
        params["trajectories"] = []
        for ref in refs["trajectories"]:
            a = _annotation(state, ref, "trajectory")
            used.setdefault("trajectories", []).append({"id": a["id"], "version": a.get("version")})
            d = a["data"]
            params["trajectories"].append(
                {"entry_lps": d["entry"], "target_lps": d["target"], "diameter_mm": d["diameter_mm"]}
            )
    if "region_marker" in refs:
        a = _annotation(state, refs["region_marker"], "marker")
        used["region_marker"] = {"id": a["id"], "version": a.get("version")}
        params["region"] = {"kind": "sphere", "center_lps": a["data"]["point"], "radius_mm": body.region_radius_mm}
    return params, used


@router.get("/design/operations")
def operations(_: CurrentPrincipal) -> list[dict[str, Any]]:
    return [
        {
            "name": op.name,
            "summary": op.summary,
            "inputs": list(op.inputs),
            "optional_inputs": list(op.optional_inputs),
            "outputs": list(op.outputs),
        }
        for op in OPERATIONS.values()
    ]


@router.post("/rooms/{room_id}/design/{operation}", status_code=202)
async def run(
    room_id: str, operation: str, body: DesignRequest, principal: CurrentPrincipal, request: Request
) -> JobView:
    op = OPERATIONS.get(operation)
    if op is None:
        raise NotFound(f"no design operation {operation!r}; one of {', '.join(OPERATIONS)}")

    def check() -> tuple[Any, dict[str, Any]]:
        with request.app.state.db.session() as db:
            room, role = rooms.require_member(db, room_id, principal)
            if role == "observer":
                raise Forbidden("observers cannot run design operations")
            if room.case_id is None:
                raise Invalid("attach a case to the room first: design works on the case's models")
            case = require_case(db, principal, room.case_id)
            rows = {r: artifacts.get(db, a) for r, a in body.inputs.items()}
            for r, row in rows.items():
                if row.case_id != case.id:
                    raise NotFound(f"input {r!r}: no such artifact in this room's case")
            audit.record_by(
                db,
                principal,
                f"design.{operation}",
                target_type="case",
                target_id=case.id,
                room_id=room_id,
                ip=client_ip(request),
                inputs=body.inputs,
            )
            return case, {r: (row.name, row.lineage_id) for r, row in rows.items()}

    case, named = await request.app.state.db.run_write(check)
    hub = await request.app.state.hubs.get(room_id)
    params, used = resolve_annotations(hub.state, body)
    normalized = op.normalize(params)  # raises a 4xx that names the bad field
    missing = [r for r in op.inputs if r not in named]
    if missing or any(r not in op.inputs + op.optional_inputs for r in named):
        raise Invalid(f"{operation} takes inputs {list(op.inputs + op.optional_inputs)}; missing {missing}")
    first_name, first_lineage = named[op.inputs[0]]
    outputs = {}
    for role in op.outputs:
        if CONTINUES.get(operation) == role:
            outputs[role] = {"lineage_id": first_lineage, "name": first_name}
        else:
            name = NEW_NAMES.get(role, "{name} ({role})").format(
                name=first_name, op=normalized.get("op", ""), role=role
            )
            outputs[role] = {
                "lineage_id": f"{operation}-{new_id()[:12]}",
                "name": name[:200],
                "kind": "guide" if role == "guide" else "mesh",
            }
    job_params = {
        "operation": operation,
        "inputs": body.inputs,
        "parameters": normalized,
        "outputs": outputs,
        "case_id": case.id,
        "site_id": case.site_id,
        "annotation_refs": used,
    }
    spec = JobSpec(kind="design.run", params=job_params, submitted_by=principal.user_id, room_id=room_id)
    return await request.app.state.jobs.submit(spec)  # type: ignore[no-any-return]


@router.post("/cases/{case_id}/meshes", status_code=201)
async def upload_mesh(
    case_id: str, principal: CurrentPrincipal, request: Request, room_id: str | None = None
) -> dict[str, Any]:
    """One mesh file (STL, OBJ, PLY, GLB, 3MF) as multipart/form-data: checked against the limits and
    parsed before anything is stored; a new model of the case (shown in `room_id` if given)."""
    from server.imaging.deps import job_room, owning_site_writer

    settings = request.app.state.settings

    def check() -> tuple[Any, str | None]:
        with request.app.state.db.session() as db:
            case = owning_site_writer(db, principal, case_id)
            return case, job_room(db, principal, case_id, room_id) if room_id else None

    case, room = await request.app.state.db.run_read(check)
    folder = settings.spool_dir / new_id()
    parts = await spool_multipart(
        request.headers.get("content-type", ""),
        request.stream(),
        folder,
        max_bytes=settings.mesh_max_bytes,
        max_files=1,
    )
    part = parts[0]
    fmt = part.name.rsplit(".", 1)[-1].lower() if "." in part.name else ""
    try:
        if fmt not in FORMATS:
            raise Invalid(f"{part.name!r}: the file name must end in one of {', '.join('.' + f for f in FORMATS)}")
        data = await asyncio.to_thread(part.path.read_bytes)
        mesh = await asyncio.to_thread(load_mesh, data, fmt, mesh_limits(settings))
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, True)
    blobs = request.app.state.blobs
    # The file as sent, plus PLY (exact, what operations read), GLB (browser) and STL (printing).
    payloads = {fmt: data} | {g: export_mesh(mesh, g) for g in ("ply", "glb", "stl") if g != fmt}
    files = {}
    for f, payload in payloads.items():
        ref = await asyncio.to_thread(blobs.put_bytes, payload, site_id=case.site_id)
        files[f] = {"sha256": ref.sha256, "size": ref.size}
    name = part.name.rsplit(".", 1)[0][:200] or "uploaded mesh"

    def record() -> Any:
        with request.app.state.db.session() as db:
            row = artifacts.add_version(
                db,
                case_id=case.id,
                site_id=case.site_id,
                lineage_id=f"upload-{new_id()[:12]}",
                kind="mesh",
                name=name,
                files=files,
                created_by=principal.user_id,
                room_id=room,
                meta={
                    "faces": len(mesh.faces),
                    "vertices": len(mesh.vertices),
                    "volume_mm3": float(mesh.volume),
                    "watertight": bool(mesh.is_watertight),
                    "bbox_min_lps": mesh.bounds[0].tolist(),
                    "bbox_max_lps": mesh.bounds[1].tolist(),
                    "operation": "upload",
                },
                provenance={
                    "operation": "upload",
                    "inputs": [{"filename": part.name, "sha256": files[fmt]["sha256"], "format": fmt}],
                    "user": principal.user_id,
                },
            )
            audit.record_by(
                db,
                principal,
                "design.mesh_upload",
                target_type="artifact",
                target_id=row.id,
                ip=client_ip(request),
                room_id=room,
            )
            return row

    row = await request.app.state.db.run_write(record)
    if room:
        from server.imaging.tasks import model_result

        hub = await request.app.state.hubs.get(room)
        for op in model_result(row)["room_ops"]:
            await hub.system_op(op["kind"], op["payload"], op_id=f"upload:{row.id}")
    return artifacts.public(row)
