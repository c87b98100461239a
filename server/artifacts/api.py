"""REST: a case's artifacts, their files (audited downloads) and their provenance chains."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from sqlmodel import Session

from server.artifacts import store
from server.artifacts.models import Artifact
from server.cases.api import require_case
from server.core import audit
from server.core.auth import Principal
from server.core.errors import NotFound
from server.deps import CurrentPrincipal, SessionDep, client_ip

router = APIRouter(prefix="/api", tags=["artifacts"])


def visible_artifact(db: Session, principal: Principal, artifact_id: str) -> Artifact:
    row = store.get(db, artifact_id)
    require_case(db, principal, row.case_id)
    return row


@router.get("/cases/{case_id}/artifacts")
def case_artifacts(case_id: str, principal: CurrentPrincipal, db: SessionDep) -> list[dict[str, Any]]:
    require_case(db, principal, case_id)
    return [store.public(row) for row in store.of_case(db, case_id)]


@router.get("/artifacts/{artifact_id}")
def artifact(artifact_id: str, principal: CurrentPrincipal, db: SessionDep) -> dict[str, Any]:
    row = visible_artifact(db, principal, artifact_id)
    return store.public(row) | {"provenance": row.provenance}


@router.get("/artifacts/{artifact_id}/provenance")
def provenance(artifact_id: str, principal: CurrentPrincipal, db: SessionDep) -> dict[str, Any]:
    """The chain from this artifact back to the CT series it came from, as one JSON document."""
    visible_artifact(db, principal, artifact_id)
    return {"artifact_id": artifact_id, "chain": store.chain(db, artifact_id)}


@router.get("/artifacts/{artifact_id}/file.{fmt}")
async def download(artifact_id: str, fmt: str, principal: CurrentPrincipal, request: Request) -> StreamingResponse:
    def check() -> Artifact:
        with request.app.state.db.session() as db:
            row = visible_artifact(db, principal, artifact_id)
            if fmt not in row.files:
                raise NotFound(f"artifact {artifact_id} has no {fmt} file (it has: {', '.join(sorted(row.files))})")
            audit.record_by(
                db,
                principal,
                "artifact.download",
                target_type="artifact",
                target_id=artifact_id,
                ip=client_ip(request),
                format=fmt,
            )
            return row

    row = await request.app.state.db.run_write(check)
    entry = row.files[fmt]
    chunks = await request.app.state.blobs.read_stream(entry["sha256"])
    filename = f"{row.name}-v{row.version}.{fmt}".replace('"', "")
    return StreamingResponse(
        chunks,
        media_type=store.MEDIA_TYPES.get(fmt, "application/octet-stream"),
        headers={
            "content-length": str(entry["size"]),
            "content-disposition": f'attachment; filename="{filename}"',
            "cache-control": "private, max-age=31536000, immutable",  # a version's bytes never change
            "etag": f'"{entry["sha256"]}"',
        },
    )
