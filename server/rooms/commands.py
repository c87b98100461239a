"""What a room's actor is asked to do (rooms/hub.py): ops, joins, leaves, remote events, resyncs."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from server.rooms.connection import Connection
from server.rooms.state import Actor, RoomRole


@dataclass
class Op:
    conn: Connection | None
    actor: Actor
    op_id: str | None
    kind: str
    payload: dict[str, Any]
    received_s: float = field(default_factory=time.perf_counter)
    done: asyncio.Future[dict[str, Any]] | None = None  # for system ops awaited by REST
    reply_to: str | None = None  # forwarded by this instance (rooms/forwarding.py), which awaits a reply
    forwarded_s: float | None = None  # when this instance first forwarded it to a leader


@dataclass
class Join:
    conn: Connection
    resume: dict[str, Any] | None
    done: asyncio.Future[bool]


@dataclass
class Leave:
    conn: Connection


@dataclass
class Remote:
    """A sequenced event another instance stored and published."""

    frame: str


@dataclass
class Reply:
    """The leader's answer to an op this instance forwarded: a rejection, or a duplicate's sequence."""

    message: dict[str, Any]


@dataclass
class Resync:
    """Catch up from the log (the bus was away and may have missed events)."""


Command = Op | Join | Leave | Remote | Reply | Resync


@dataclass
class MemberInfo:
    user_id: str
    display_name: str
    site_id: str
    role: RoomRole
