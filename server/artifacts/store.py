"""Artifact rows: new versions in a lineage, lookups, and the provenance chain back to the CT series.

Used by the app (REST) and by job workers (which open their own session), always with a session passed in.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from server.artifacts.models import Artifact
from server.core.auth import new_id
from server.core.db import now_ms
from server.core.errors import NotFound

MEDIA_TYPES = {
    "glb": "model/gltf-binary",
    "stl": "model/stl",
    "3mf": "model/3mf",
    "ply": "application/octet-stream",
    "nrrd": "application/octet-stream",
    "json": "application/json",
    "mp4": "video/mp4",
    "gcode": "text/x.gcode",
    "sl1": "application/zip",
}
MAX_CHAIN = 200


def add_version(
    db: Session,
    *,
    case_id: str,
    site_id: str,
    lineage_id: str,
    kind: str,
    name: str,
    files: dict[str, Any],
    meta: dict[str, Any],
    provenance: dict[str, Any],
    created_by: str,
    room_id: str | None,
    artifact_id: str | None = None,
) -> Artifact:
    """The next version of `lineage_id`. With `artifact_id` (derived from the job, so a re-run of the job
    after a crash finds its own row) an existing row is returned instead of adding another version."""
    if artifact_id is not None:
        existing = db.get(Artifact, artifact_id)
        if existing is not None:
            return existing
    for _ in range(5):  # two jobs finishing at once on one lineage: the unique index decides, retry
        last = db.exec(select(func.max(Artifact.version)).where(Artifact.lineage_id == lineage_id)).one()
        row = Artifact(
            id=artifact_id or new_id(),
            case_id=case_id,
            site_id=site_id,
            room_id=room_id,
            lineage_id=lineage_id,
            version=(last or 0) + 1,
            kind=kind,
            name=name,
            files=files,
            meta=meta,
            provenance={**provenance, "at_ms": provenance.get("at_ms") or now_ms()},
            created_by=created_by,
        )
        db.add(row)
        try:
            db.commit()
        except IntegrityError:
            db.rollback()
            continue
        db.refresh(row)
        return row
    raise RuntimeError(f"could not add a version to lineage {lineage_id}")


def get(db: Session, artifact_id: str) -> Artifact:
    row = db.get(Artifact, artifact_id)
    if row is None:
        raise NotFound("no such artifact")
    return row


def latest(db: Session, lineage_id: str) -> Artifact | None:
    return db.exec(
        select(Artifact).where(Artifact.lineage_id == lineage_id).order_by(col(Artifact.version).desc())
    ).first()


def of_case(db: Session, case_id: str) -> list[Artifact]:
    return list(
        db.exec(
            select(Artifact)
            .where(Artifact.case_id == case_id)
            .order_by(col(Artifact.lineage_id), col(Artifact.version))
        ).all()
    )


def chain(db: Session, artifact_id: str) -> list[dict[str, Any]]:
    """Every artifact this one was made from, walked breadth-first through provenance inputs, each with its
    provenance: from a guide back through the cut and the bone model to the CT series."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    queue = [artifact_id]
    while queue and len(out) < MAX_CHAIN:
        current = queue.pop(0)
        if current in seen:
            continue
        seen.add(current)
        row = get(db, current)
        out.append(public(row) | {"provenance": row.provenance})
        for source in row.provenance.get("inputs", []):
            if source.get("artifact_id"):
                queue.append(str(source["artifact_id"]))
    return out


def public(row: Artifact) -> dict[str, Any]:
    return {
        "id": row.id,
        "case_id": row.case_id,
        "lineage_id": row.lineage_id,
        "version": row.version,
        "kind": row.kind,
        "name": row.name,
        "files": {fmt: {"sha256": f["sha256"], "size": f["size"]} for fmt, f in row.files.items()},
        "meta": row.meta,
        "created_by": row.created_by,
        "created_at_ms": row.created_at_ms,
        "room_id": row.room_id,
    }
