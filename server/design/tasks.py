"""The design job kind: one operation of server/design/operations.py on stored artifact versions, its
outputs stored as new versions (PLY for exact reloading, GLB for the browser, STL and 3MF for printing)
with the operation's provenance, and shown in the room."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from server.artifacts import store as artifacts
from server.artifacts.models import Artifact
from server.core import worker_context
from server.core.errors import NotFound
from server.core.jobs import Progress, job_kind
from server.design.meshes import MeshLimits, export_mesh, load_mesh
from server.design.operations import InputArtifact, run_operation
from server.settings import Settings

READ_FORMATS = ("ply", "stl", "glb", "3mf")  # most exact first: PLY keeps doubles
EXTRA_EXPORTS = ("glb", "stl", "3mf")


def mesh_limits(settings: Settings) -> MeshLimits:
    return MeshLimits(max_bytes=settings.mesh_max_bytes, max_faces=settings.mesh_max_faces)


def read_input(row: Artifact) -> InputArtifact:
    fmt = next((f for f in READ_FORMATS if f in row.files), None)
    if fmt is None:
        raise NotFound(f"artifact {row.id} has no mesh file")
    data = worker_context.blobs().path_of(row.files[fmt]["sha256"]).read_bytes()
    return InputArtifact(row.id, data, fmt)


def store_mesh_files(ply: bytes, site_id: str) -> dict[str, dict[str, Any]]:
    """The PLY plus its exports, each in the blob store: {format: {sha256, size}}."""
    blobs = worker_context.blobs()
    mesh = load_mesh(ply, "ply", MeshLimits(max_bytes=len(ply) + 1, max_faces=10**9))
    files = {"ply": ply, **{fmt: export_mesh(mesh, fmt) for fmt in EXTRA_EXPORTS}}
    refs = {fmt: blobs.put_bytes(data, site_id=site_id) for fmt, data in files.items()}
    return {fmt: {"sha256": r.sha256, "size": r.size} for fmt, r in refs.items()}


@job_kind("design.run", timeout_s=3600)
def design_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    from server.imaging.tasks import model_result

    settings, db = worker_context.settings(), worker_context.database()
    job = worker_context.job()
    case_id, site_id, outputs = params["case_id"], params["site_id"], params["outputs"]
    stored: dict[str, Artifact] = {}
    with db.session() as session:
        for role in outputs:
            found = session.get(Artifact, f"{job['id']}-{role}")
            if found is not None:
                stored[role] = found
        rows = {role: artifacts.get(session, artifact_id) for role, artifact_id in params["inputs"].items()}
    run_report: dict[str, Any] = {}
    if not outputs or len(stored) < len(outputs):  # not a re-run that already finished its writes
        progress(0.05, f"loading {len(rows)} input mesh(es)")
        inputs = {role: read_input(row) for role, row in rows.items()}
        progress(0.15, f"running {params['operation']}")
        run = run_operation(params["operation"], inputs, params["parameters"], limits=mesh_limits(settings))
        run_report = run.report
        provenance = run.provenance
        progress(0.8, "storing the results")
        for output in run.outputs:
            if output.role in stored:
                continue
            target = outputs[output.role]
            files = store_mesh_files(output.data, site_id)
            record = provenance.to_dict() | {
                "user": job.get("submitted_by"),
                "room": job.get("room_id"),
                "job_id": job.get("id"),
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "role": output.role,
                "annotations": params.get("annotation_refs", {}),
            }
            mesh = load_mesh(output.data, "ply", MeshLimits(max_bytes=len(output.data) + 1, max_faces=10**9))
            meta = {
                "faces": output.faces,
                "vertices": output.vertices,
                "volume_mm3": float(mesh.volume),
                "area_mm2": float(mesh.area),
                "watertight": bool(mesh.is_watertight),
                "bbox_min_lps": mesh.bounds[0].tolist(),
                "bbox_max_lps": mesh.bounds[1].tolist(),
                "operation": params["operation"],
            }
            with db.session() as session:
                stored[output.role] = artifacts.add_version(
                    session,
                    case_id=case_id,
                    site_id=site_id,
                    lineage_id=target["lineage_id"],
                    kind=target.get("kind", "mesh"),
                    name=target["name"],
                    files=files,
                    meta=meta,
                    provenance=record,
                    created_by=str(job.get("submitted_by") or "system"),
                    room_id=job.get("room_id"),
                    artifact_id=f"{job['id']}-{output.role}",
                )
    room_ops = [op for role in outputs if role in stored for op in model_result(stored[role])["room_ops"]]
    return {
        "operation": params["operation"],
        "report": run_report,
        "outputs": {
            role: {"artifact_id": row.id, "lineage_id": row.lineage_id, "version": row.version}
            for role, row in stored.items()
        },
        "room_ops": room_ops,
    }
