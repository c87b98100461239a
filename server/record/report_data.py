"""What the consultation report shows, gathered from SQL into plain data (report_pdf.py draws it).

De-identified throughout: the case's label and description, never its identity row. Print jobs do not
exist yet: the section lists the outcomes the printing edge reported (`print.*` audit rows) and whatever
`PRINT_JOB_SOURCES` add once print jobs are stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlmodel import Session, col, func, or_, select

from server.accounts.models import Site, User
from server.artifacts.models import Artifact
from server.cases.models import Case
from server.core.audit import AuditEvent
from server.core.db import now_ms
from server.imaging.models import ImagingInstance, ImagingSeries, ImagingStudy
from server.record import plans as plan_store
from server.record.config import RecordConfig
from server.record.models import Snapshot
from server.rooms import repository as rooms
from server.rooms.models import Room, RoomEvent

TIMELINE_ACTIONS = (
    "room.create",
    "room.join",
    "room.case_attach",
    "room.member_add",
    "room.invite_accept",
    "room.archive",
    "plan.",
    "record.snapshot",
    "record.report_export",
    "design.",
    "imaging.upload",
    "print.",
)
KEY_ACTIONS = ("plan.", "print.", "room.create", "room.archive")  # never left out of a long timeline
SCENE_KINDS = ("scene.model.added", "room.archived")
# Printing registers here: fn(db, room_id, case_id) -> [{"id", "artifact", "printer", "state", "at_ms", ...}]
PRINT_JOB_SOURCES: list[Callable[[Session, str, str | None], list[dict[str, Any]]]] = []


@dataclass
class ReportData:
    room: dict[str, Any]
    generated_at_ms: int
    generated_by: str
    case: dict[str, Any] | None
    participants: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    plan: dict[str, Any] | None
    plan_history: list[dict[str, Any]]
    snapshots: list[dict[str, Any]]  # each with "image_path" of the PNG
    artifacts: list[dict[str, Any]]
    print_jobs: list[dict[str, Any]]
    recordings: list[dict[str, Any]]
    truncated: dict[str, int] = field(default_factory=dict)  # section -> rows left out by the limits


def _names(db: Session, ids: set[str]) -> dict[str, str]:
    ids = {i for i in ids if i}
    rows = db.exec(select(User).where(col(User.id).in_(ids))).all() if ids else []
    return {u.id: u.display_name for u in rows} | {"system": "Trinity"}


def _case(db: Session, case: Case, sites: dict[str, str]) -> dict[str, Any]:
    studies = []
    for study in db.exec(select(ImagingStudy).where(ImagingStudy.case_id == case.id)).all():
        series = db.exec(select(func.count()).select_from(ImagingSeries).where(ImagingSeries.study_id == study.id))
        instances = db.exec(
            select(func.count()).select_from(ImagingInstance).where(ImagingInstance.study_id == study.id)
        )
        studies.append(
            {
                "description": study.description,
                "modalities": study.modalities,
                "series": series.one(),
                "instances": instances.one(),
            }
        )
    return {
        "label": case.label,
        "description": case.description,
        "site": sites.get(case.site_id, case.site_id),
        "created_at_ms": case.created_at_ms,
        "studies": studies,
    }


def _timeline(
    db: Session, room: Room, limit: int, names: Callable[[str | None], str]
) -> tuple[list[dict[str, Any]], int]:
    wanted = [
        col(AuditEvent.action).startswith(a) if a.endswith(".") else col(AuditEvent.action) == a
        for a in TIMELINE_ACTIONS
    ]
    audits = db.exec(
        select(AuditEvent)
        .where(AuditEvent.room_id == room.id, or_(*wanted))
        .order_by(col(AuditEvent.seq).desc())
        .limit(limit * 5)
    ).all()
    entries: list[dict[str, Any]] = [
        {"ts_ms": a.ts_ms, "who": names(a.actor_id), "what": a.action, "detail": _audit_detail(a)} for a in audits
    ]
    events = db.exec(
        select(RoomEvent)
        .where(RoomEvent.room_id == room.id, col(RoomEvent.kind).in_(SCENE_KINDS))
        .order_by(col(RoomEvent.seq))
        .limit(limit)
    ).all()
    for event in events:
        data = orjson.loads(event.data)
        detail = f"{data.get('name', data.get('id', ''))} v{data.get('version', 1)}" if "name" in data else ""
        entries.append({"ts_ms": event.ts_ms, "who": names(event.user_id), "what": event.kind, "detail": detail})
    entries.sort(key=lambda e: int(e["ts_ms"]))
    if len(entries) <= limit:
        return entries, 0
    # Over the limit: decisions and outcomes always stay; of the rest (joins…), the newest.
    kept = [e for e in entries if str(e["what"]).startswith(KEY_ACTIONS)]
    rest = [e for e in entries if not str(e["what"]).startswith(KEY_ACTIONS)]
    chosen = kept + rest[len(rest) - max(0, limit - len(kept)) :]
    chosen.sort(key=lambda e: int(e["ts_ms"]))
    return chosen, len(entries) - len(chosen)


def _audit_detail(event: AuditEvent) -> str:
    d = event.details
    if event.action.startswith("plan."):
        text = f"version {d.get('version')}"
        return text + (f": {d['comment']}" if d.get("comment") else "")
    if event.action == "room.join":
        return f"as {d.get('role', '')}"
    if event.action.startswith("print."):
        return f"job {d.get('print_job_id', '')} {d.get('printer', '')} {d.get('detail', '')}".strip()
    return ""


def _plan(
    db: Session, room_id: str, names: Callable[[str | None], str]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    versions = plan_store.plans_of_room(db, room_id)
    history = [
        {"version": p.version, "status": p.status, "current": p.superseded_by is None, "hash": p.content_hash}
        for p in versions
    ]
    current = next((p for p in reversed(versions) if p.superseded_by is None), None)
    if current is None:
        return None, history
    decisions = [
        {"who": names(d.user_id), "decision": d.decision, "comment": d.comment, "at_ms": d.at_ms}
        for d in plan_store.decisions_of(db, current.id)
    ]
    plan = {
        "version": current.version,
        "status": current.status,
        "content_hash": current.content_hash,
        "proposed_by": names(current.proposed_by),
        "proposed_at_ms": current.proposed_at_ms,
        "notes": current.content.get("notes", ""),
        "annotations": current.content.get("annotations", []),
        "artifacts": current.content.get("artifacts", []),
        "decisions": decisions,
    }
    return plan, history


def _provenance(row: Artifact, by_id: dict[str, Artifact]) -> dict[str, Any]:
    p = row.provenance
    inputs = []
    for source in p.get("inputs", []):
        if source.get("artifact_id"):
            src = by_id.get(source["artifact_id"])
            inputs.append(f"{src.name} v{src.version}" if src else str(source["artifact_id"]))
        elif source.get("series_uid"):
            inputs.append(f"CT series {source['series_uid']}")
    return {
        "operation": p.get("operation", ""),
        "inputs": inputs,
        "parameters": p.get("parameters", {}),
        "libraries": p.get("libraries", {}),
        "job_id": p.get("job_id"),
    }


def gather(
    db: Session, *, room_id: str, generated_by: str, config: RecordConfig, blob_path: Callable[[str], Path]
) -> ReportData:
    room = rooms.get_room(db, room_id)
    sites = {s.id: s.name for s in db.exec(select(Site)).all()}
    case = db.get(Case, room.case_id) if room.case_id else None
    members = rooms.members(db, room_id)
    people: set[str] = {m.user_id for m in members} | {generated_by}
    artifacts = (
        list(db.exec(select(Artifact).where(Artifact.case_id == case.id).order_by(col(Artifact.created_at_ms))))
        if case
        else []
    )
    people |= {a.created_by for a in artifacts}
    joins = db.exec(
        select(AuditEvent.actor_id, func.min(AuditEvent.ts_ms))
        .where(AuditEvent.room_id == room_id, AuditEvent.action == "room.join")
        .group_by(col(AuditEvent.actor_id))
    ).all()
    first_join = {actor: ts for actor, ts in joins if actor}
    people |= set(first_join)
    audit_actors = db.exec(select(AuditEvent.actor_id).where(AuditEvent.room_id == room_id).distinct()).all()
    people |= {a for a in audit_actors if a}
    name_of = _names(db, people)

    def names(user_id: str | None) -> str:
        return name_of.get(user_id or "", user_id or "Trinity")

    truncated: dict[str, int] = {}
    timeline, left = _timeline(db, room, config.report_max_timeline, names)
    if left:
        truncated["timeline"] = left
    plan, history = _plan(db, room_id, names)
    snapshot_rows = list(
        db.exec(select(Snapshot).where(Snapshot.room_id == room_id).order_by(col(Snapshot.created_at_ms)))
    )
    if len(snapshot_rows) > config.report_max_snapshots:
        truncated["snapshots"] = len(snapshot_rows) - config.report_max_snapshots
    snapshots = [
        {
            "label": s.label or s.kind,
            "kind": s.kind,
            "by": names(s.created_by),
            "at_ms": s.created_at_ms,
            "camera": s.camera,
            "visible_models": s.visible_models,
            "slice": s.slice,
            "width": s.width,
            "height": s.height,
            "sha256": s.blob_sha256,
            "image_path": blob_path(s.blob_sha256),
        }
        for s in snapshot_rows[-config.report_max_snapshots :]
    ]
    by_id = {a.id: a for a in artifacts}
    design = [a for a in artifacts if a.kind != "recording"]
    if len(design) > config.report_max_artifacts:
        truncated["artifacts"] = len(design) - config.report_max_artifacts
    artifact_rows = [
        {
            "name": a.name,
            "version": a.version,
            "kind": a.kind,
            "by": names(a.created_by),
            "at_ms": a.created_at_ms,
            "files": {fmt: f["sha256"] for fmt, f in sorted(a.files.items())},
            "provenance": _provenance(a, by_id),
        }
        for a in design[-config.report_max_artifacts :]
    ]
    recordings = [
        {
            "name": a.name,
            "version": a.version,
            "id": a.id,
            "at_ms": a.created_at_ms,
            "files": {fmt: f["sha256"] for fmt, f in a.files.items()},
            "duration_s": a.meta.get("duration_s"),
        }
        for a in db.exec(
            select(Artifact).where(
                Artifact.kind == "recording", or_(Artifact.room_id == room_id, Artifact.case_id == room.case_id)
            )
        ).all()
    ]
    print_jobs = _print_jobs(db, room, names)
    return ReportData(
        room={"id": room.id, "title": room.title, "site": sites.get(room.site_id, room.site_id), "kind": room.kind},
        generated_at_ms=now_ms(),
        generated_by=names(generated_by),
        case=_case(db, case, sites) if case else None,
        participants=[
            {
                "name": names(m.user_id),
                "site": sites.get(m.site_id, m.site_id),
                "role": m.role,
                "first_join_ms": first_join.get(m.user_id),
            }
            for m in sorted(members, key=lambda m: (m.site_id != room.site_id, m.role != "owner", names(m.user_id)))
        ],
        timeline=timeline,
        plan=plan,
        plan_history=history,
        snapshots=snapshots,
        artifacts=artifact_rows,
        print_jobs=print_jobs,
        recordings=recordings,
        truncated=truncated,
    )


def _print_jobs(db: Session, room: Room, names: Callable[[str | None], str]) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    if room.case_id:
        outcomes = db.exec(
            select(AuditEvent)
            .where(AuditEvent.case_id == room.case_id, col(AuditEvent.action).startswith("print."))
            .order_by(col(AuditEvent.seq))
        ).all()
        artifacts = {a.id: a for a in db.exec(select(Artifact).where(Artifact.case_id == room.case_id)).all()}
        for event in outcomes:
            artifact = artifacts.get(event.target_id)
            jobs.append(
                {
                    "id": event.details.get("print_job_id", ""),
                    "artifact": f"{artifact.name} v{artifact.version}" if artifact else event.target_id,
                    "printer": event.details.get("printer", ""),
                    "state": event.action.removeprefix("print."),
                    "detail": event.details.get("detail", ""),
                    "at_ms": event.ts_ms,
                }
            )
    for source in PRINT_JOB_SOURCES:
        jobs.extend(source(db, room.id, room.case_id))
    return jobs
