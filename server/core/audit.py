"""The audit trail: who did what to which room or case, when and from where. Append-only."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Column
from sqlmodel import Field, Session, SQLModel

from server.core.db import now_ms


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_events"
    id: int | None = Field(default=None, primary_key=True)
    ts_ms: int = Field(default_factory=now_ms, sa_type=BigInteger, index=True)
    actor_id: str | None = Field(default=None, index=True, max_length=64)
    actor_site_id: str | None = Field(default=None, max_length=64)
    action: str = Field(index=True, max_length=64)  # e.g. room.join, case.open, auth.login
    target_type: str = Field(default="", max_length=32)
    target_id: str = Field(default="", index=True, max_length=64)
    room_id: str | None = Field(default=None, index=True, max_length=64)
    ip: str | None = Field(default=None, max_length=64)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


def record(
    session: Session,
    action: str,
    *,
    actor_id: str | None,
    actor_site_id: str | None = None,
    target_type: str = "",
    target_id: str = "",
    room_id: str | None = None,
    ip: str | None = None,
    commit: bool = True,
    **details: Any,
) -> None:
    session.add(
        AuditEvent(
            action=action,
            actor_id=actor_id,
            actor_site_id=actor_site_id,
            target_type=target_type,
            target_id=target_id,
            room_id=room_id,
            ip=ip,
            details=details,
        )
    )
    if commit:
        session.commit()


def record_by(session: Session, principal: Any, action: str, **fields: Any) -> None:
    """Record an action of a logged-in principal (anything with user_id and site_id)."""
    record(session, action, actor_id=principal.user_id, actor_site_id=principal.site_id, **fields)
