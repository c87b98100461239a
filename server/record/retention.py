"""Retention: erasing a case removes its files, its derived artifacts and its rows everywhere.

Gone: the case and its identity, imaging studies/series/instances/UID links/ingest reports, artifacts,
jobs, plan versions with their pinned artifacts and decisions, snapshots, and the event logs of the
case's rooms (annotations and chat are about the patient). The rooms themselves stay, archived, with
their case link cleared, a fresh epoch and an empty log, so members still see that the consultation
took place. The audit rows stay (they hold ids, never content): the erasure is itself audited.
Blob holds are released only for blobs no other record of the site still uses (identical bytes are
stored once, so another case can share a file).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from server.artifacts.models import Artifact
from server.cases.models import Case, CaseIdentity
from server.core import audit
from server.core.auth import Principal
from server.core.db import now_ms
from server.core.errors import Conflict, Forbidden, NotFound
from server.core.job_store import JobRecord
from server.imaging.models import ImagingInstance, ImagingSeries, ImagingStudy, IngestReport, UidLink
from server.record.models import PlanArtifact, PlanDecision, PlanVersion, Snapshot
from server.rooms.models import Room, RoomEvent

ACTIVE_JOB_STATES = ("queued", "running")


@dataclass
class Erasure:
    case_id: str
    site_id: str
    room_ids: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    blobs: set[tuple[str, str]] = field(default_factory=set)  # (site_id, sha256) the case's records held


def _blob_refs(db: Session, case_id: str, site_id: str, room_ids: list[str]) -> set[tuple[str, str]]:
    refs = {
        (site_id, sha) for sha in db.exec(select(ImagingInstance.blob_sha256).where(ImagingInstance.case_id == case_id))
    }
    for artifact in db.exec(select(Artifact).where(Artifact.case_id == case_id)):
        refs |= {(artifact.site_id, f["sha256"]) for f in artifact.files.values()}
    snaps = select(Snapshot).where((col(Snapshot.case_id) == case_id) | col(Snapshot.room_id).in_(room_ids))
    refs |= {(s.site_id, s.blob_sha256) for s in db.exec(snaps)}
    return refs


def _case_jobs(db: Session, case_id: str, room_ids: list[str]) -> list[JobRecord]:
    in_rooms = list(db.exec(select(JobRecord).where(col(JobRecord.room_id).in_(room_ids)))) if room_ids else []
    # Machine-started jobs (PACS, SCP) have no room: find them by the case in their parameters.
    roomless = db.exec(select(JobRecord).where(col(JobRecord.room_id).is_(None))).all()
    return in_rooms + [j for j in roomless if (j.params or {}).get("case_id") == case_id]


def erase_case(db: Session, principal: Principal, case_id: str, *, reason: str, ip: str | None) -> Erasure:
    """Delete the case's rows in one transaction (the caller re-authenticated the admin and archived
    the rooms); returns what blob holds to release once it is committed."""
    case = db.get(Case, case_id)
    if case is None or case.site_id != principal.site_id:
        raise NotFound("case not found")
    if not principal.is_admin:
        raise Forbidden("only the owning site's admins erase a case")
    room_ids = list(db.exec(select(Room.id).where(Room.case_id == case_id)))
    jobs = _case_jobs(db, case_id, room_ids)
    if any(j.state in ACTIVE_JOB_STATES for j in jobs):
        raise Conflict("a job of this case is still queued or running; cancel it or wait, then erase")
    erasure = Erasure(case_id, case.site_id, room_ids, blobs=_blob_refs(db, case_id, case.site_id, room_ids))
    # Audited first, in the same transaction: the row names the case while it still exists.
    audit.record_by(
        db, principal, "case.erase", target_type="case", target_id=case_id, ip=ip, commit=False, reason=reason,
        rooms=room_ids,
    )  # fmt: skip
    plan_ids = list(
        db.exec(
            select(PlanVersion.id).where((col(PlanVersion.case_id) == case_id) | col(PlanVersion.room_id).in_(room_ids))
        )
    )
    artifact_ids = list(db.exec(select(Artifact.id).where(Artifact.case_id == case_id)))
    steps: list[tuple[str, Any]] = [
        ("plan_decisions", delete(PlanDecision).where(col(PlanDecision.plan_id).in_(plan_ids))),
        (
            "plan_artifacts",
            delete(PlanArtifact).where(
                col(PlanArtifact.plan_id).in_(plan_ids) | col(PlanArtifact.artifact_id).in_(artifact_ids)
            ),
        ),
        ("plan_versions", delete(PlanVersion).where(col(PlanVersion.id).in_(plan_ids))),
        (
            "room_snapshots",
            delete(Snapshot).where((col(Snapshot.case_id) == case_id) | col(Snapshot.room_id).in_(room_ids)),
        ),
        ("imaging_instances", delete(ImagingInstance).where(col(ImagingInstance.case_id) == case_id)),
        ("imaging_series", delete(ImagingSeries).where(col(ImagingSeries.case_id) == case_id)),
        ("imaging_studies", delete(ImagingStudy).where(col(ImagingStudy.case_id) == case_id)),
        ("imaging_uid_links", delete(UidLink).where(col(UidLink.case_id) == case_id)),
        ("imaging_ingest_reports", delete(IngestReport).where(col(IngestReport.case_id) == case_id)),
        ("artifacts", delete(Artifact).where(col(Artifact.id).in_(artifact_ids))),
        ("jobs", delete(JobRecord).where(col(JobRecord.id).in_([j.id for j in jobs]))),
        ("room_events", delete(RoomEvent).where(col(RoomEvent.room_id).in_(room_ids))),
        ("case_identities", delete(CaseIdentity).where(col(CaseIdentity.case_id) == case_id)),
    ]
    for name, statement in steps:
        erasure.counts[name] = db.execute(statement).rowcount  # type: ignore[attr-defined]
    at = now_ms()
    for room_id in room_ids:
        # A new epoch tells every client that the history is gone; they take a fresh (empty) snapshot.
        db.execute(
            update(Room)
            .where(col(Room.id) == room_id)
            .values(case_id=None, last_seq=0, epoch=secrets.token_hex(8), archived_at_ms=at)
        )
    erasure.counts["cases"] = db.execute(delete(Case).where(col(Case.id) == case_id)).rowcount  # type: ignore[attr-defined]
    db.commit()
    return erasure


def unused_blobs(db: Session, refs: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """Of the erased case's (site, sha256) holds, those no remaining record of that site uses."""
    in_artifacts: dict[str, set[str]] = {}
    for site_id in {site for site, _ in refs}:  # artifact files are JSON: one scan per site, not per blob
        rows = db.exec(select(Artifact.files).where(Artifact.site_id == site_id))
        in_artifacts[site_id] = {f.get("sha256") for files in rows for f in files.values()}
    out = []
    for site_id, sha in sorted(refs):
        used = sha in in_artifacts[site_id]
        used = (
            used
            or db.exec(
                select(ImagingInstance.id)
                .join(Case, col(Case.id) == col(ImagingInstance.case_id))
                .where(ImagingInstance.blob_sha256 == sha, Case.site_id == site_id)
            ).first()
            is not None
        )
        used = (
            used
            or db.exec(select(Snapshot.id).where(Snapshot.blob_sha256 == sha, Snapshot.site_id == site_id)).first()
            is not None
        )
        if not used:
            out.append((site_id, sha))
    return out
