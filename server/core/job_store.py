"""The jobs table: state, progress, error, timings, inputs and outputs of every job."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index
from sqlmodel import Field, Session, SQLModel, select

from server.core.db import now_ms
from server.core.jobs import JobView


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
    )


def find_by_key(db: Session, submitted_by: str, key: str) -> JobRecord | None:
    return db.exec(
        select(JobRecord).where(JobRecord.submitted_by == submitted_by, JobRecord.idempotency_key == key)
    ).first()


def unfinished(db: Session) -> list[JobRecord]:
    return list(db.exec(select(JobRecord).where(JobRecord.state.in_(("queued", "running")))).all())  # type: ignore[attr-defined]
