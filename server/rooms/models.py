"""Rooms, members, invites and the per-room event log."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Text
from sqlmodel import Field, SQLModel

from server.core.db import now_ms


class Room(SQLModel, table=True):
    __tablename__ = "rooms"
    id: str = Field(primary_key=True, max_length=64)
    site_id: str = Field(foreign_key="sites.id", index=True, max_length=64)
    kind: str = Field(max_length=20)  # consultation | maker
    title: str = Field(max_length=200)
    case_id: str | None = Field(default=None, foreign_key="cases.id", max_length=64)
    owner_id: str = Field(foreign_key="users.id", max_length=64)
    epoch: str = Field(max_length=32)  # changes when history is lost; clients then resync
    last_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    created_at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger)
    archived_at_ms: int | None = Field(default=None, sa_type=BigInteger)


class RoomMember(SQLModel, table=True):
    __tablename__ = "room_members"
    room_id: str = Field(foreign_key="rooms.id", primary_key=True, max_length=64)
    user_id: str = Field(foreign_key="users.id", primary_key=True, index=True, max_length=64)
    role: str = Field(max_length=20)  # owner | participant | observer
    via_invite: str | None = Field(default=None, max_length=64)
    created_at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger)


class RoomInvite(SQLModel, table=True):
    __tablename__ = "room_invites"
    id: str = Field(primary_key=True, max_length=64)
    room_id: str = Field(foreign_key="rooms.id", index=True, max_length=64)
    token_hash: str = Field(unique=True, max_length=128)
    role: str = Field(max_length=20)  # participant | observer
    expires_at_ms: int = Field(sa_type=BigInteger)
    max_uses: int = 1
    uses: int = 0
    created_by: str = Field(foreign_key="users.id", max_length=64)
    created_at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger)
    revoked_at_ms: int | None = Field(default=None, sa_type=BigInteger)


class RoomEvent(SQLModel, table=True):
    """The ordered, durable log of a room: one row per sequenced op."""

    __tablename__ = "room_events"
    __table_args__ = (Index("ux_room_events_op", "room_id", "user_id", "op_id", unique=True),)
    room_id: str = Field(foreign_key="rooms.id", primary_key=True, max_length=64)
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    user_id: str = Field(max_length=64)
    op_id: str | None = Field(default=None, max_length=64)
    kind: str = Field(max_length=40)
    data: str = Field(sa_column=Column(Text, nullable=False))  # JSON
    ts_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
