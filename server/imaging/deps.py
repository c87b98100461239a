"""What the imaging and design edges share: who may add to a case, which room a job reports into, and
submitting a job on behalf of the caller."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from sqlmodel import Session

from server.cases.api import require_case
from server.cases.models import Case
from server.core.auth import Principal
from server.core.errors import Forbidden, Invalid
from server.core.jobs import JobSpec, JobView
from server.rooms import repository as rooms

WRITE_ROLES = ("surgeon", "engineer", "radiologist", "admin")


def owning_site_writer(db: Session, principal: Principal, case_id: str) -> Case:
    case = require_case(db, principal, case_id)
    if case.site_id != principal.site_id or principal.role not in WRITE_ROLES:
        raise Forbidden("only the owning site's surgeons, engineers, radiologists and admins add images to a case")
    return case


def job_room(db: Session, principal: Principal, case_id: str, room_id: str | None) -> str | None:
    """The room that sees a job's progress and result: the one asked for (it must show this case and the
    caller must be a participant), else the caller's latest open room on the case, else none."""
    if room_id:
        room, role = rooms.require_member(db, room_id, principal)
        if room.case_id != case_id:
            raise Invalid("that room does not show this case")
        if role == "observer":
            raise Forbidden("observers cannot start jobs")
        return room.id
    for room, role in rooms.list_my_rooms(db, principal):
        if room.case_id == case_id and role != "observer":
            return room.id
    return None


async def submit_job(
    request: Request,
    principal: Principal,
    kind: str,
    params: dict[str, Any],
    room_id: str | None,
    key: str | None = None,
) -> JobView:
    spec = JobSpec(kind=kind, params=params, submitted_by=principal.user_id, room_id=room_id, idempotency_key=key)
    return await request.app.state.jobs.submit(spec)  # type: ignore[no-any-return]
