"""The room WebSocket endpoint (docs/protocol.md): authenticate, join the hub, decode and dispatch.

Every frame is checked here for size, rate and shape before it reaches the hub; a bad frame gets a
typed `error` and the connection stays open, so one broken or hostile client never affects others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketState

from server.core import audit
from server.core.auth import Principal, authenticate
from server.core.errors import TrinityError
from server.core.logs import room_context
from server.core.ws_direct import EXTENSION as DIRECT
from server.rooms import protocol as p
from server.rooms import repository
from server.rooms.connection import Connection
from server.rooms.hub import RoomHub, dumps
from server.rooms.hubs import Hubs
from server.rooms.ratelimit import TokenBucket
from server.rooms.state import RoomRole

router = APIRouter()
log = logging.getLogger("trinity.ws")


def _error(code: p.ErrorCode | str, message: str, op_id: str | None = None) -> str:
    return dumps(p.OpRejected(p.ErrorCode(code), message).to_frame(op_id))


async def _close(websocket: WebSocket, code: int, error: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_text(error)
        await websocket.close(code)


def _authorize(app: Any, room_id: str, token: str, ip: str | None) -> tuple[Principal, RoomRole]:
    with app.state.db.session() as db:
        principal = authenticate(db, app.state.settings, token)
        room, role = repository.require_member(db, room_id, principal)
        if room.archived_at_ms:
            role = "observer"  # archived rooms are read-only
        audit.record_by(
            db,
            principal,
            "room.join",
            target_type="room",
            target_id=room_id,
            room_id=room_id,
            ip=ip,
            role=role,
        )
    return principal, role


def _audit_leave(app: Any, principal: Principal, room_id: str, ip: str | None) -> None:
    with app.state.db.session() as db:
        audit.record_by(
            db,
            principal,
            "room.leave",
            target_type="room",
            target_id=room_id,
            room_id=room_id,
            ip=ip,
        )


def _oversized(text: str, limit: int) -> bool:
    return len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit)


@router.websocket("/ws/rooms/{room_id}")
async def room_socket(websocket: WebSocket, room_id: str) -> None:
    app = websocket.app
    settings = app.state.settings
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol=p.SUBPROTOCOL if p.SUBPROTOCOL in offered else None)
    room_context.set(room_id)
    ip = websocket.client.host if websocket.client else None
    try:
        first = await asyncio.wait_for(websocket.receive_text(), settings.ws_auth_timeout_s)
        hello = orjson.loads(first)
        if not isinstance(hello, dict) or hello.get("type") != p.HELLO:
            raise ValueError("the first frame must be hello")
    except TimeoutError:
        await _close(websocket, p.CLOSE_AUTH_TIMEOUT, _error("unauthenticated", "no hello within the time limit"))
        return
    except Exception:
        await _close(websocket, p.CLOSE_PROTOCOL, _error("bad_message", "the first frame must be a JSON hello"))
        return
    if hello.get("protocol", p.PROTOCOL_VERSION) != p.PROTOCOL_VERSION:
        await _close(
            websocket, p.CLOSE_PROTOCOL, _error("protocol_version", f"server speaks protocol {p.PROTOCOL_VERSION}")
        )
        return
    try:
        principal, role = await app.state.db.run_read(_authorize, app, room_id, str(hello.get("token", "")), ip)
    except TrinityError as exc:
        code = p.CLOSE_AUTH_FAILED if exc.status == 401 else p.CLOSE_NOT_FOUND
        await _close(websocket, code, _error("unauthenticated" if exc.status == 401 else "not_found", exc.message))
        return
    hubs: Hubs = app.state.hubs
    hub = await hubs.get(room_id)
    conn = Connection(
        websocket.send_text,
        websocket.close,
        user_id=principal.user_id,
        display_name=principal.display_name,
        site_id=principal.site_id,
        role=role,
        queue_max=settings.ws_send_queue_max,
        stall_s=settings.ws_send_stall_s,
        on_slow=app.state.metrics.slow_dropped.inc,
        batch_max_bytes=settings.ws_batch_max_bytes if hello.get("batch") is True else 0,
        direct=websocket.scope.get("extensions", {}).get(DIRECT),
        writes=hubs.writes,
    )
    sender = asyncio.create_task(conn.run_sender())
    resume = hello.get("resume") if isinstance(hello.get("resume"), dict) else None
    try:
        if await hub.join(conn, resume):
            await _receive_loop(websocket, hub, conn, app)
    finally:
        hub.leave(conn)
        if getattr(app.state, "video", None) is not None:
            app.state.video.disconnected(hub, conn)  # closes this connection's peer connection
        if not conn.closed:
            conn.drop(1000, "bye")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sender, 2.0)
        hubs.release(room_id)
        await app.state.db.run_read(_audit_leave, app, principal, room_id, ip)


async def _receive_loop(websocket: WebSocket, hub: RoomHub, conn: Connection, app: Any) -> None:
    handle = FrameHandler(hub, conn, app)
    direct = websocket.scope.get("extensions", {}).get(DIRECT)
    if direct is not None:
        # Text frames now go to `handle` as uvicorn parses them (server/core/ws_direct.py); this loop
        # still takes what was queued before, binary frames and the disconnect.
        direct["receive_with"](handle)
    try:
        while not conn.closed and websocket.client_state == WebSocketState.CONNECTED:
            message = await (_receive_until_dropped(websocket, conn) if direct else websocket.receive())
            if message is None or message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                raw = message.get("bytes") or b""
                text = raw.decode("utf-8", errors="replace")
            handle(text)
    finally:
        if direct is not None:
            direct["receive_with"](None)


async def _receive_until_dropped(websocket: WebSocket, conn: Connection) -> Any:
    """The next ASGI message, or None once the connection is dropped (a slow consumer): on the direct
    path text frames never come here, so nothing else would end this loop while a dropped client's
    full socket keeps its close frame from going out."""
    receive = asyncio.ensure_future(websocket.receive())
    dropped = asyncio.ensure_future(conn.dropped.wait())
    try:
        await asyncio.wait((receive, dropped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        dropped.cancel()
        if not receive.done():
            receive.cancel()
    return receive.result() if receive.done() and not receive.cancelled() else None


class FrameHandler:
    """Checks one client frame for size, rate and shape, then dispatches it; synchronous, so it runs
    in uvicorn's read callback on the direct path."""

    def __init__(self, hub: RoomHub, conn: Connection, app: Any) -> None:
        settings = app.state.settings
        self.hub = hub
        self.conn = conn
        self.settings = settings
        self.metrics = app.state.metrics
        self.bucket = TokenBucket(settings.ws_rate_per_s, settings.ws_rate_burst)
        self.counters_in = {t: self.metrics.messages_in.labels(type=t) for t in (*_FRAME_TYPES, "other")}
        self.limit = settings.ws_max_message_bytes
        self.video = getattr(app.state, "video", None)

    def __call__(self, text: str) -> None:
        conn = self.conn
        if conn.closed:
            return
        if _oversized(text, self.limit):
            self.metrics.errors.labels(code="too_large").inc()
            conn.push(_error("too_large", f"frame exceeds {self.limit} bytes"))
            return
        if not self.bucket.take():
            self.metrics.errors.labels(code="rate_limited").inc()
            conn.push(_error("rate_limited", f"more than {self.settings.ws_rate_per_s:g} frames/s; slow down"))
            return
        try:
            frame = orjson.loads(text)
            if not isinstance(frame, dict):
                raise ValueError
        except ValueError:
            self.metrics.errors.labels(code="bad_message").inc()
            conn.push(_error("bad_message", "frame is not a JSON object"))
            return
        kind = frame.get("type")
        self.counters_in[kind if kind in _FRAME_TYPES else "other"].inc()
        op_id = frame.get("op_id") if isinstance(frame.get("op_id"), str) else None
        try:
            if self.video is not None and kind in p.RTC_CLIENT_TYPES:
                self.video.handle(self.hub, conn, frame)  # video signaling: server/rooms/video, never stored
            else:
                _dispatch(self.hub, conn, kind, frame, op_id)
        except p.OpRejected as rejection:
            self.metrics.errors.labels(code=str(rejection.code)).inc()
            conn.push(dumps(rejection.to_frame(op_id)))
        except Exception:
            # A bug on input nobody expected: answer this frame, keep the socket and the room going.
            log.exception("handling a room frame failed", extra={"room_id": self.hub.room_id})
            self.metrics.errors.labels(code="internal").inc()
            conn.push(_error("internal", "the frame could not be handled", op_id))


_FRAME_TYPES = {p.OP, p.POINTER, p.CAMERA, p.PRESENCE, p.PING, p.HELLO}


def _dispatch(hub: RoomHub, conn: Connection, kind: Any, frame: dict[str, Any], op_id: str | None) -> None:
    if kind == p.OP:
        if op_id is None or not 0 < len(op_id) <= p.MAX_ID_CHARS:
            raise p.OpRejected(p.ErrorCode.BAD_MESSAGE, f"op needs an op_id string of 1-{p.MAX_ID_CHARS} characters")
        op_kind = frame.get("kind")
        if op_kind not in p.OP_KINDS:
            raise p.OpRejected(p.ErrorCode.UNKNOWN_TYPE, f"unknown op kind {op_kind!r}")
        payload = frame.get("data", {})
        if not isinstance(payload, dict):
            raise p.OpRejected(p.ErrorCode.BAD_MESSAGE, "op data must be an object")
        hub.submit(conn, op_id, op_kind, payload)
    elif kind == p.POINTER:
        hub.pointer(conn, p.pointer_payload(frame))
    elif kind == p.CAMERA:
        hub.camera_update(conn, p.camera_payload(frame))
    elif kind == p.PRESENCE:
        status = frame.get("status")
        if status not in ("active", "idle"):
            raise p.OpRejected(p.ErrorCode.BAD_MESSAGE, "presence status must be active or idle")
        hub.set_presence(conn, status)
    elif kind == p.PING:
        conn.push(dumps({"type": "pong", "t": frame.get("t")}))
    elif kind == p.HELLO:
        raise p.OpRejected(p.ErrorCode.BAD_MESSAGE, "already joined")
    else:
        raise p.OpRejected(p.ErrorCode.UNKNOWN_TYPE, f"unknown frame type {kind!r}")
