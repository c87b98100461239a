"""What each notification says and to whom: built from the database, handed to the Notifier.

Bodies are de-identified like everything that leaves the owning site: the case's label, the room and
plan ids and a link; never the patient's name or ID. Run these in a worker thread (they read SQL).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from server.accounts.models import User
from server.artifacts.models import Artifact
from server.cases.models import Case
from server.record.config import RecordConfig
from server.record.models import PlanVersion
from server.record.notify import Notification
from server.rooms.models import Room, RoomMember


def _room_people(db: Session, room_id: str) -> list[tuple[User, str]]:
    rows = db.exec(
        select(User, RoomMember)
        .join(RoomMember, col(RoomMember.user_id) == col(User.id))
        .where(RoomMember.room_id == room_id, col(User.active).is_(True))
    ).all()
    return [(user, member.role) for user, member in rows]


def _emails(
    people: list[tuple[User, str]], *, surgeons_only: bool = False, exclude: str | None = None
) -> tuple[str, ...]:
    return tuple(
        sorted(
            {
                user.email
                for user, room_role in people
                if user.email
                and room_role != "observer"
                and user.role != "observer"
                and (not surgeons_only or user.role == "surgeon")
                and user.id != exclude
            }
        )
    )


def _context(db: Session, config: RecordConfig, room: Room) -> dict[str, Any]:
    case = db.get(Case, room.case_id) if room.case_id else None
    return {
        "room_id": room.id,
        "room_title": room.title,
        "site_id": room.site_id,
        "case_id": room.case_id,
        "case_label": case.label if case else None,
        "url": f"{config.public_url.rstrip('/')}/#/rooms/{room.id}" if config.public_url else None,
    }


def _name(db: Session, user_id: str | None) -> str:
    user = db.get(User, user_id) if user_id else None
    return user.display_name if user else (user_id or "")


def plan_notification(db: Session, config: RecordConfig, plan: PlanVersion) -> Notification:
    """A proposed version waits for the room's surgeons; a decided one goes to the whole room."""
    room = db.get(Room, plan.room_id)
    assert room is not None
    context = _context(db, config, room)
    people = _room_people(db, room.id)
    label = context["case_label"] or room.title
    payload = context | {
        "plan_id": plan.id,
        "version": plan.version,
        "status": plan.status,
        "content_hash": plan.content_hash,
        "proposed_by": _name(db, plan.proposed_by),
    }
    link = f"\n\nOpen the room: {context['url']}" if context["url"] else ""
    if plan.status == "pending":
        return Notification(
            event="plan.pending",
            payload=payload,
            subject=f"[Trinity] Plan v{plan.version} for {label} waits for your approval",
            text=(
                f"{payload['proposed_by']} proposed version {plan.version} of the plan in '{room.title}' "
                f"(case {label}). A surgeon of the room approves or rejects it in Trinity.{link}"
            ),
            recipients=_emails(people, surgeons_only=True, exclude=plan.proposed_by),
        )
    decided_by = _name(db, plan.decided_by)
    payload |= {"decided_by": decided_by, "comment": plan.decision_comment}
    comment = f"\n\nComment: {plan.decision_comment}" if plan.decision_comment else ""
    return Notification(
        event=f"plan.{plan.status}",
        payload=payload,
        subject=f"[Trinity] Plan v{plan.version} for {label} {plan.status} by {decided_by}",
        text=f"{decided_by} {plan.status} version {plan.version} of the plan in '{room.title}'.{comment}{link}",
        recipients=_emails(people),
    )


def print_notification(
    db: Session,
    config: RecordConfig,
    *,
    artifact_id: str,
    print_job_id: str,
    succeeded: bool,
    detail: str = "",
    printer: str = "",
) -> Notification:
    artifact = db.get(Artifact, artifact_id)
    room = db.get(Room, artifact.room_id) if artifact and artifact.room_id else None
    context = _context(db, config, room) if room else {"case_id": artifact.case_id if artifact else None}
    people = _room_people(db, room.id) if room else []
    outcome = "finished" if succeeded else "failed"
    what = f"{artifact.name} v{artifact.version}" if artifact else artifact_id
    payload = context | {
        "print_job_id": print_job_id,
        "artifact_id": artifact_id,
        "artifact": what,
        "printer": printer,
        "detail": detail,
    }
    return Notification(
        event=f"print.{outcome}",
        payload=payload,
        subject=f"[Trinity] Print of {what} {outcome}",
        text=f"The print of {what}{f' on {printer}' if printer else ''} {outcome}. {detail}".strip(),
        recipients=_emails(people),
    )
