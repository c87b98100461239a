"""REST: start a job in a room, list a room's jobs, read one, cancel it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from server.core import audit
from server.core.errors import Forbidden, Invalid, NotFound
from server.core.job_store import JobRecord, to_view
from server.core.jobs import REGISTRY, JobSpec, JobView
from server.deps import CurrentPrincipal, client_ip
from server.rooms import repository as rooms

router = APIRouter(prefix="/api", tags=["jobs"])


class JobCreate(BaseModel):
    kind: str = Field(max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, max_length=128)


def _in_db(request: Request, fn):  # type: ignore[no-untyped-def]
    def run():  # type: ignore[no-untyped-def]
        with request.app.state.db.session() as db:
            return fn(db)

    return request.app.state.db.run_read(run)


@router.post("/rooms/{room_id}/jobs", status_code=202)
async def start_job(room_id: str, body: JobCreate, principal: CurrentPrincipal, request: Request) -> JobView:
    def check(db: Session) -> None:
        _, role = rooms.require_member(db, room_id, principal)
        if role == "observer":
            raise Forbidden("observers cannot start jobs")
        kind = REGISTRY.get(body.kind)
        if kind is None or not kind.user_submittable:
            raise Invalid(f"no job kind {body.kind!r} can be started directly")
        audit.record_by(
            db,
            principal,
            "job.submit",
            target_type="job",
            target_id=body.kind,
            room_id=room_id,
            ip=client_ip(request),
        )

    await _in_db(request, check)
    spec = JobSpec(
        kind=body.kind,
        params=body.params,
        submitted_by=principal.user_id,
        room_id=room_id,
        idempotency_key=body.idempotency_key,
    )
    return await request.app.state.jobs.submit(spec)  # type: ignore[no-any-return]


@router.get("/rooms/{room_id}/jobs")
async def room_jobs(room_id: str, principal: CurrentPrincipal, request: Request) -> list[JobView]:
    def run(db: Session) -> list[JobView]:
        rooms.require_member(db, room_id, principal)
        records = db.exec(
            select(JobRecord)
            .where(JobRecord.room_id == room_id)
            .order_by(col(JobRecord.created_at_ms).desc())
            .limit(200)
        ).all()
        return [to_view(r) for r in records]

    return await _in_db(request, run)  # type: ignore[no-any-return]


def _visible_job(db: Session, principal: Any, job_id: str) -> JobRecord:
    record = db.get(JobRecord, job_id)
    if record is None:
        raise NotFound("job not found")
    in_room = record.room_id is not None and rooms.room_role(db, record.room_id, principal) is not None
    if record.submitted_by != principal.user_id and not in_room:
        raise NotFound("job not found")
    return record


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, principal: CurrentPrincipal, request: Request) -> JobView:
    return await _in_db(request, lambda db: to_view(_visible_job(db, principal, job_id)))  # type: ignore[no-any-return]


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, principal: CurrentPrincipal, request: Request) -> JobView:
    def check(db: Session) -> None:
        record = _visible_job(db, principal, job_id)
        role = rooms.room_role(db, record.room_id, principal) if record.room_id else None
        if record.submitted_by != principal.user_id and role != "owner" and not principal.is_admin:
            raise Forbidden("only who started a job, the room's owners or an admin cancel it")
        audit.record_by(
            db,
            principal,
            "job.cancel",
            target_type="job",
            target_id=job_id,
            room_id=record.room_id,
            ip=client_ip(request),
        )

    await _in_db(request, check)
    return await request.app.state.jobs.cancel(job_id, principal.display_name)  # type: ignore[no-any-return]
