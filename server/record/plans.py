"""Plan versions: propose (immutable content + sha256), decide (approve / reject), supersede, and the
gate the printing edge calls before queueing a guide or implant (`require_approved_plan`).

Data functions take a session; the REST edge (plans_api.py) authorizes, re-authenticates and publishes
to the room. Status changes are conditional UPDATEs (`… WHERE status = 'pending' AND superseded_by IS
NULL`), so two surgeons deciding at once, or a decision racing a new version, change the row once.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from server.artifacts.models import Artifact
from server.core import audit
from server.core.auth import Principal, new_id
from server.core.db import now_ms
from server.core.errors import Conflict, Invalid, NotFound
from server.record.errors import PlanNotApproved
from server.record.models import PlanArtifact, PlanDecision, PlanVersion
from server.rooms.models import Room

DEVICE_KINDS = frozenset({"guide", "implant"})  # medical devices: printed only from an approved plan
MAX_PLAN_ARTIFACTS = 50


def content_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _artifact_entry(row: Artifact) -> dict[str, Any]:
    return {
        "artifact_id": row.id,
        "lineage_id": row.lineage_id,
        "version": row.version,
        "kind": row.kind,
        "name": row.name,
        "files": {fmt: f["sha256"] for fmt, f in sorted(row.files.items())},
    }


def propose(
    db: Session,
    principal: Principal,
    room: Room,
    *,
    annotations: list[dict[str, Any]],
    artifact_ids: list[str],
    notes: str,
    room_seq: int,
    ip: str | None = None,
) -> tuple[PlanVersion, list[str]]:
    """Store a new plan version of the room; every earlier current version is superseded by it."""
    if room.case_id is None:
        raise Invalid("attach a case to the room first: a plan is about a case")
    if len(set(artifact_ids)) > MAX_PLAN_ARTIFACTS:
        raise Invalid(f"a plan pins at most {MAX_PLAN_ARTIFACTS} artifact versions")
    rows = []
    for artifact_id in dict.fromkeys(artifact_ids):
        row = db.get(Artifact, artifact_id)
        if row is None or row.case_id != room.case_id:
            raise NotFound(f"artifact {artifact_id!r}: no such artifact in this room's case")
        rows.append(row)
    content = {
        "annotations": annotations,
        "artifacts": [_artifact_entry(r) for r in rows],
        "notes": notes,
        "room_seq": room_seq,
    }
    digest = content_hash(content)
    for _ in range(5):  # two proposals at once: the unique (room, version) index decides, retry
        last = db.exec(select(func.max(PlanVersion.version)).where(PlanVersion.room_id == room.id)).one()
        plan = PlanVersion(
            id=new_id(),
            room_id=room.id,
            case_id=room.case_id,
            site_id=room.site_id,
            version=(last or 0) + 1,
            content=content,
            content_hash=digest,
            proposed_by=principal.user_id,
        )
        db.add(plan)
        try:
            db.flush()
        except IntegrityError:
            db.rollback()
            continue
        for row in rows:
            db.add(PlanArtifact(plan_id=plan.id, artifact_id=row.id))
        superseded = list(
            db.exec(
                select(PlanVersion.id).where(
                    PlanVersion.room_id == room.id, col(PlanVersion.superseded_by).is_(None), PlanVersion.id != plan.id
                )
            ).all()
        )
        if superseded:
            db.execute(
                update(PlanVersion)
                .where(col(PlanVersion.id).in_(superseded), col(PlanVersion.superseded_by).is_(None))
                .values(superseded_by=plan.id, superseded_at_ms=now_ms())
            )
        audit.record_by(
            db,
            principal,
            "plan.propose",
            target_type="room",
            target_id=room.id,
            room_id=room.id,
            ip=ip,
            commit=False,
            plan_id=plan.id,
            version=plan.version,
            content_hash=digest,
            artifacts=[r.id for r in rows],
            supersedes=superseded,
        )
        db.commit()
        return plan, superseded
    raise Conflict("could not number the plan version; try again")


def get_plan(db: Session, room_id: str, plan_id: str) -> PlanVersion:
    plan = db.get(PlanVersion, plan_id)
    if plan is None or plan.room_id != room_id:
        raise NotFound("no such plan version in this room")
    return plan


def decide(
    db: Session, principal: Principal, plan: PlanVersion, *, decision: str, comment: str, ip: str | None = None
) -> PlanVersion:
    """Approve or reject a pending, current plan version (the caller checked role and password)."""
    if decision not in ("approved", "rejected"):
        raise Invalid("decision must be approved or rejected")
    at = now_ms()
    changed = db.execute(
        update(PlanVersion)
        .where(
            col(PlanVersion.id) == plan.id,
            col(PlanVersion.status) == "pending",
            col(PlanVersion.superseded_by).is_(None),
        )
        .values(status=decision, decided_by=principal.user_id, decided_at_ms=at, decision_comment=comment)
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        db.rollback()  # expires everything: `fresh` is read again
        fresh = db.get(PlanVersion, plan.id)
        if fresh is not None and fresh.superseded_by:
            raise Conflict(f"plan version {plan.version} was superseded; decide on the current version")
        raise Conflict(f"plan version {plan.version} is already {fresh.status if fresh else 'gone'}")
    db.add(
        PlanDecision(
            id=new_id(), plan_id=plan.id, user_id=principal.user_id, decision=decision, comment=comment, at_ms=at
        )
    )
    audit.record_by(
        db,
        principal,
        f"plan.{'approve' if decision == 'approved' else 'reject'}",
        target_type="room",
        target_id=plan.room_id,
        room_id=plan.room_id,
        ip=ip,
        commit=False,
        plan_id=plan.id,
        version=plan.version,
        content_hash=plan.content_hash,
        comment=comment,
        reauthenticated=True,
    )
    db.commit()
    db.refresh(plan)
    return plan


def plans_of_room(db: Session, room_id: str) -> list[PlanVersion]:
    return list(db.exec(select(PlanVersion).where(PlanVersion.room_id == room_id).order_by(col(PlanVersion.version))))


def decisions_of(db: Session, plan_id: str) -> list[PlanDecision]:
    return list(db.exec(select(PlanDecision).where(PlanDecision.plan_id == plan_id).order_by(col(PlanDecision.at_ms))))


def require_approved_plan(db: Session, artifact_id: str) -> PlanVersion | None:
    """The printing gate: the current approved plan version that pins this artifact version.

    Guides and implants (DEVICE_KINDS) raise PlanNotApproved unless such a version exists: never in a
    plan, only in pending or rejected versions, or only in superseded ones. Other artifacts (a bone
    model printed for demonstration) need no plan: their approving plan or None is returned."""
    artifact = db.get(Artifact, artifact_id)
    if artifact is None:
        raise NotFound("no such artifact")
    plans = list(
        db.exec(
            select(PlanVersion)
            .join(PlanArtifact, col(PlanArtifact.plan_id) == col(PlanVersion.id))
            .where(PlanArtifact.artifact_id == artifact_id)
            .order_by(col(PlanVersion.version).desc())
        ).all()
    )
    for plan in plans:
        if plan.status == "approved" and plan.superseded_by is None:
            return plan
    if artifact.kind not in DEVICE_KINDS:
        return None
    what = f"{artifact.kind} {artifact.name!r} v{artifact.version}"
    if not plans:
        raise PlanNotApproved(f"{what} is in no plan: propose a plan with it and have a surgeon approve it")
    current = [p for p in plans if p.superseded_by is None]
    if not current:
        newest = plans[0]
        raise PlanNotApproved(
            f"{what} is only in superseded plan versions (v{newest.version} was superseded); "
            "the current plan version does not include it",
            plan_id=newest.id,
        )
    raise PlanNotApproved(
        f"{what}: plan version {current[0].version} is {current[0].status}, not approved", plan_id=current[0].id
    )


def public(plan: PlanVersion, decisions: list[PlanDecision] | None = None) -> dict[str, Any]:
    out = {
        "id": plan.id,
        "room_id": plan.room_id,
        "case_id": plan.case_id,
        "version": plan.version,
        "status": plan.status,
        "current": plan.superseded_by is None,
        "superseded_by": plan.superseded_by,
        "content": plan.content,
        "content_hash": plan.content_hash,
        "proposed_by": plan.proposed_by,
        "proposed_at_ms": plan.proposed_at_ms,
        "decided_by": plan.decided_by,
        "decided_at_ms": plan.decided_at_ms,
        "decision_comment": plan.decision_comment,
    }
    if decisions is not None:
        out["decisions"] = [
            {"user_id": d.user_id, "decision": d.decision, "comment": d.comment, "at_ms": d.at_ms} for d in decisions
        ]
    return out
