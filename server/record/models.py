"""Record tables: plan versions (immutable content + its sha256), the artifacts each version pins, the
surgeons' decisions, and snapshots of the room's views."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index
from sqlmodel import Field, SQLModel

from server.core.db import now_ms


class PlanVersion(SQLModel, table=True):
    __tablename__ = "plan_versions"
    __table_args__ = (Index("ux_plan_room_version", "room_id", "version", unique=True),)
    id: str = Field(primary_key=True, max_length=64)
    room_id: str = Field(foreign_key="rooms.id", index=True, max_length=64)
    case_id: str = Field(foreign_key="cases.id", index=True, max_length=64)
    site_id: str = Field(max_length=64)
    version: int
    # {"annotations": [...], "artifacts": [...], "notes": str, "room_seq": int}; never changed after insert
    content: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    content_hash: str = Field(max_length=64)  # sha256 of the canonical JSON of `content`
    status: str = Field(default="pending", max_length=16)  # pending | approved | rejected
    proposed_by: str = Field(max_length=64)
    proposed_at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger)
    decided_by: str | None = Field(default=None, max_length=64)
    decided_at_ms: int | None = Field(default=None, sa_type=BigInteger)
    decision_comment: str = Field(default="", max_length=2000)
    superseded_by: str | None = Field(default=None, max_length=64)
    superseded_at_ms: int | None = Field(default=None, sa_type=BigInteger)


class PlanArtifact(SQLModel, table=True):
    """The design artifact versions a plan version pins (what `require_approved_plan` looks up)."""

    __tablename__ = "plan_artifacts"
    plan_id: str = Field(foreign_key="plan_versions.id", primary_key=True, max_length=64)
    artifact_id: str = Field(foreign_key="artifacts.id", primary_key=True, index=True, max_length=64)


class PlanDecision(SQLModel, table=True):
    __tablename__ = "plan_decisions"
    id: str = Field(primary_key=True, max_length=64)
    plan_id: str = Field(foreign_key="plan_versions.id", index=True, max_length=64)
    user_id: str = Field(foreign_key="users.id", max_length=64)
    decision: str = Field(max_length=16)  # approved | rejected
    comment: str = Field(default="", max_length=2000)
    reauthenticated: bool = True  # the password was checked on the deciding request
    at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger)


class Snapshot(SQLModel, table=True):
    __tablename__ = "room_snapshots"
    id: str = Field(primary_key=True, max_length=64)
    room_id: str = Field(foreign_key="rooms.id", index=True, max_length=64)
    case_id: str | None = Field(default=None, foreign_key="cases.id", index=True, max_length=64)
    site_id: str = Field(max_length=64)  # the room's site: it holds the blob
    kind: str = Field(max_length=16)  # view3d | slice
    label: str = Field(default="", max_length=200)
    blob_sha256: str = Field(max_length=64)
    size_bytes: int = Field(default=0, sa_type=BigInteger)
    width: int = 0
    height: int = 0
    camera: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    visible_models: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    slice: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_by: str = Field(max_length=64)
    created_at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger)
