"""Shared by the record's REST modules: run a function with a session off the event loop, the record's
config and notifier from app state, and publishing a system op into a room without failing the request."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from sqlmodel import Session

from server.core.auth import Principal
from server.core.errors import Conflict, Forbidden
from server.record.config import RecordConfig
from server.record.notify import Notification, Notifier
from server.rooms import repository as rooms
from server.rooms.models import Room
from server.rooms.protocol import OpRejected
from server.rooms.state import RoomRole

T = TypeVar("T")
log = logging.getLogger("trinity.record")


async def in_db(request: Request, fn: Callable[[Session], T], *, write: bool = True) -> T:
    """`fn(session)` in a worker thread (writes through the database's writer thread)."""
    db = request.app.state.db

    def run() -> T:
        with db.session() as session:
            return fn(session)

    return await (db.run_write(run) if write else db.run_read(run))  # type: ignore[no-any-return]


def config_of(request: Request) -> RecordConfig:
    return request.app.state.record_config  # type: ignore[no-any-return]


def notify(request: Request, notification: Notification) -> None:
    notifier: Notifier | None = getattr(request.app.state, "notifier", None)
    if notifier is not None:
        notifier.submit(notification)


def require_contributor(db: Session, room_id: str, principal: Principal) -> tuple[Room, RoomRole]:
    """A member who may add to the room's record (not an observer) in a room that is not archived."""
    room, role = rooms.require_member(db, room_id, principal)
    if role == "observer":
        raise Forbidden("observers cannot change the room's record")
    if room.archived_at_ms:
        raise Conflict("the room is archived; its record is read-only")
    return room, role


async def publish(request: Request, room_id: str, kind: str, payload: dict[str, Any], op_id: str) -> None:
    """Show a stored record change in the room. The database is the truth: a refusal (the room was
    archived meanwhile) is logged, not raised, and the op id keeps a repeat from showing it twice."""
    try:
        hub = await request.app.state.hubs.get(room_id)
        await hub.system_op(kind, payload, op_id=op_id)
    except OpRejected as rejected:
        log.warning("room refused a record event", extra={"room_id": room_id, "kind": kind, "reason": str(rejected)})
