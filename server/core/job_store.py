"""The jobs table: state, progress, error, timings, inputs and outputs of every job.

Also what every job runner does with it (the embedded one and the Celery one): insert with an
idempotency key, load, update (optionally fenced on state and attempt, so that a cancelled job or a
superseded run cannot overwrite the row), the changes at start and end of a run, and the `job` frame.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from server.core.auth import new_id
from server.core.db import now_ms
from server.core.errors import NotFound
from server.core.jobs import JobSpec, JobView

PROGRESS_WRITE_EVERY_S = 0.25  # progress reaches the row and the room at most this often (and at 100 %)


class JobRecord(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (Index("ux_jobs_idempotency", "submitted_by", "idempotency_key", unique=True),)
    id: str = Field(primary_key=True, max_length=64)
    kind: str = Field(max_length=64, index=True)
    state: str = Field(max_length=20, index=True)
    progress: float = 0.0
    message: str = Field(default="", max_length=500)
    room_id: str | None = Field(default=None, index=True, max_length=64)
    submitted_by: str = Field(max_length=64)
    idempotency_key: str | None = Field(default=None, max_length=128)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    error: str | None = Field(default=None, max_length=2000)
    attempts: int = 0
    cancel_requested: bool = False
    # A finished job's room ops (result["room_ops"], e.g. a new model in the scene) not yet applied.
    effects_pending: bool = Field(default=False, index=True)
    created_at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger)
    started_at_ms: int | None = Field(default=None, sa_type=BigInteger)
    finished_at_ms: int | None = Field(default=None, sa_type=BigInteger)


def to_view(record: JobRecord) -> JobView:
    timings = {
        k: v
        for k, v in (
            ("created_ms", record.created_at_ms),
            ("started_ms", record.started_at_ms),
            ("finished_ms", record.finished_at_ms),
        )
        if v is not None
    }
    return JobView(
        record.id,
        record.kind,
        record.state,
        record.progress,
        record.message,
        record.room_id,
        record.result,
        record.error,
        record.attempts,
        timings,
        record.submitted_by,
        str(record.params.get("operation", "")) if isinstance(record.params, dict) else "",
    )


def find_by_key(db: Session, submitted_by: str, key: str) -> JobRecord | None:
    return db.exec(
        select(JobRecord).where(JobRecord.submitted_by == submitted_by, JobRecord.idempotency_key == key)
    ).first()


def unfinished(db: Session) -> list[JobRecord]:
    return list(db.exec(select(JobRecord).where(JobRecord.state.in_(("queued", "running")))).all())  # type: ignore[attr-defined]


def insert_job(db: Session, spec: JobSpec) -> tuple[JobRecord, bool]:
    """A queued job for `spec`, or the existing one with the same idempotency key: (record, created)."""
    if spec.idempotency_key:
        existing = find_by_key(db, spec.submitted_by, spec.idempotency_key)
        if existing:
            return existing, False
    record = JobRecord(
        id=new_id(),
        kind=spec.kind,
        state="queued",
        room_id=spec.room_id,
        submitted_by=spec.submitted_by,
        idempotency_key=spec.idempotency_key,
        params=spec.params,
    )
    db.add(record)
    try:
        db.commit()
    except IntegrityError:  # a concurrent submit with the same key won
        db.rollback()
        existing = find_by_key(db, spec.submitted_by, spec.idempotency_key or "")
        if existing:
            return existing, False
        raise
    return record, True


def load_job(db: Session, job_id: str) -> JobRecord:
    record = db.get(JobRecord, job_id)
    if record is None:
        raise NotFound("job not found")
    return record


def update_job(db: Session, job_id: str, changes: dict[str, Any]) -> JobRecord:
    record = load_job(db, job_id)
    for key, value in changes.items():
        setattr(record, key, value)
    db.add(record)
    db.commit()
    return record


def update_job_if(
    db: Session, job_id: str, changes: dict[str, Any], *, states: Iterable[str], attempt: int | None = None
) -> JobRecord | None:
    """Apply `changes` in one UPDATE only while the job is in one of `states` (and on run `attempt`, when
    given); None when it is not (cancelled meanwhile, finished, or another run took over)."""
    statement = update(JobRecord).where(col(JobRecord.id) == job_id, col(JobRecord.state).in_(tuple(states)))
    if attempt is not None:
        statement = statement.where(col(JobRecord.attempts) == attempt)
    result = db.exec(statement.values(**changes).execution_options(synchronize_session=False))
    db.commit()
    if result.rowcount != 1:
        return None
    return db.get(JobRecord, job_id, populate_existing=True)


def start_changes(record: JobRecord) -> dict[str, Any]:
    """A run begins: one more attempt, progress from zero."""
    return {
        "state": "running",
        "attempts": record.attempts + 1,
        "started_at_ms": now_ms(),
        "progress": 0.0,
        "message": "started",
    }


def finish_changes(outcome: tuple[str, Any]) -> dict[str, Any]:
    """A run ended: ("done", result) | ("cancelled", _) | ("error", message)."""
    changes: dict[str, Any] = {"finished_at_ms": now_ms()}
    if outcome[0] == "done":
        result = outcome[1]
        pending = isinstance(result, dict) and bool(result.get("room_ops"))
        changes.update(state="succeeded", progress=1.0, result=result, message="done", effects_pending=pending)
    elif outcome[0] == "cancelled":
        changes.update(state="cancelled", message="cancelled")
    else:
        changes.update(state="failed", error=str(outcome[1])[:2000], message="failed")
    return changes


def job_frame(record: JobRecord) -> dict[str, Any]:
    """The ephemeral `job` frame published into the job's room on every change (docs/protocol.md)."""
    view = to_view(record)
    return {
        "type": "job",
        "id": view.id,
        "kind": view.kind,
        "state": view.state,
        "progress": round(view.progress, 4),
        "message": view.message,
        "error": view.error,
        "result": view.result,
        "submitted_by": view.submitted_by,
        "operation": view.operation or None,
    }


def pending_effects(db: Session, limit: int) -> list[tuple[str, str | None, list[dict[str, Any]]]]:
    """Finished jobs whose room ops (result["room_ops"]) are not applied yet, oldest first."""
    rows = db.exec(
        select(JobRecord)
        .where(col(JobRecord.effects_pending).is_(True))
        .order_by(col(JobRecord.finished_at_ms))
        .limit(limit)
    ).all()
    return [(r.id, r.room_id, list((r.result or {}).get("room_ops") or [])) for r in rows]


def effects_applied(db: Session, job_id: str) -> None:
    record = db.get(JobRecord, job_id)
    if record is not None:
        record.effects_pending = False
        db.add(record)
        db.commit()
