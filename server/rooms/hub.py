"""A room's live side in this instance: one actor task applies its ops one at a time, in server order.

Flow of an op: the WebSocket edge decodes and authorizes -> `RoomHub.submit` queues it -> the actor
decides it against the state (pure core), evolves, persists the batch through the log (before any
acknowledgement), then publishes each event on the bus and acks the sender. Bus deliveries fan out to
this instance's connections. Joins run inside the same actor, so a joining or resuming client sees
every event exactly once and in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson

from server.core.bus import EventBus
from server.core.db import Database, now_ms
from server.core.metrics import Metrics
from server.rooms.connection import Connection
from server.rooms.protocol import CLOSE_ROOM_FULL, PROTOCOL_VERSION, ErrorCode, OpRejected
from server.rooms.state import SYSTEM_USER, Actor, Limits, RoomRole, RoomState, decide, evolve, replay
from server.rooms.store import GroupCommitWriter, RoomLog, SeqConflict
from server.settings import Settings

log = logging.getLogger("trinity.rooms")

PALETTE = (
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#bfef45",
    "#fabed4",
    "#469990",
    "#dcbeff",
    "#9a6324",
)
RECENT_FRAMES = 2000
MAX_BATCH = 256


def user_color(user_id: str) -> str:
    return PALETTE[int(hashlib.sha1(user_id.encode()).hexdigest(), 16) % len(PALETTE)]


def dumps(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame).decode()


@dataclass
class Op:
    conn: Connection | None
    actor: Actor
    op_id: str | None
    kind: str
    payload: dict[str, Any]
    received_s: float = field(default_factory=time.perf_counter)
    done: asyncio.Future[dict[str, Any]] | None = None  # for system ops awaited by REST


@dataclass
class Join:
    conn: Connection
    resume: dict[str, Any] | None
    done: asyncio.Future[bool]


@dataclass
class Leave:
    conn: Connection


@dataclass
class MemberInfo:
    user_id: str
    display_name: str
    site_id: str
    role: RoomRole


class RoomHub:
    def __init__(
        self,
        room_id: str,
        *,
        db: Database,
        writer: GroupCommitWriter,
        bus: EventBus,
        settings: Settings,
        metrics: Metrics,
        room_info: dict[str, Any],
    ) -> None:
        self.room_id = room_id
        self.db = db
        self.log = RoomLog(db.engine)
        self.writer = writer
        self.bus = bus
        self.settings = settings
        self.metrics = metrics
        self.room_info = room_info
        self.limits = Limits(annotation_max_bytes=settings.annotation_max_bytes, chat_max_chars=settings.chat_max_chars)
        self.state = RoomState()
        self.epoch = ""
        self.members: dict[str, MemberInfo] = {}
        self.connections: dict[int, Connection] = {}
        self.presence: dict[str, str] = {}  # user -> active | idle
        self.camera: dict[str, Any] | None = None
        self.recent: deque[tuple[int, str]] = deque(maxlen=RECENT_FRAMES)
        self.inbox: asyncio.Queue[Op | Join | Leave] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._timers: dict[Any, asyncio.TimerHandle] = {}
        self._pending_ephemeral: dict[Any, tuple[dict[str, Any], Any, Connection]] = {}

    # ---- lifecycle ------------------------------------------------------------------------------
    async def load(self, members: list[MemberInfo]) -> None:
        await self._reload()
        self.members = {m.user_id: m for m in members}
        self.bus.subscribe(self.room_id, self._on_bus)
        self._task = asyncio.create_task(self._run(), name=f"room-{self.room_id}")

    async def _reload(self) -> None:
        epoch, _seq, _archived = await self.db.run_read(self.log.head, self.room_id)
        events = await self.db.run_read(self.log.events_after, self.room_id, 0)
        self.epoch = epoch
        self.state = replay(events)
        self.recent.clear()
        for event in events[-RECENT_FRAMES:]:
            self.recent.append((event["seq"], dumps({"type": "event", **event})))

    async def close(self) -> None:
        self.bus.unsubscribe(self.room_id, self._on_bus)
        for timer in self._timers.values():
            timer.cancel()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def online_users(self) -> set[str]:
        return {c.user_id for c in self.connections.values()}

    # ---- entry points (called by the WebSocket edge and REST) ------------------------------------
    def submit(self, conn: Connection, op_id: str, kind: str, payload: dict[str, Any]) -> None:
        self.inbox.put_nowait(Op(conn, conn.actor, op_id, kind, payload))

    async def system_op(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.inbox.put_nowait(Op(None, Actor(SYSTEM_USER, "system"), None, kind, payload, done=done))
        return await done

    async def join(self, conn: Connection, resume: dict[str, Any] | None) -> bool:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.inbox.put_nowait(Join(conn, resume, done))
        return await done

    def leave(self, conn: Connection) -> None:
        self.inbox.put_nowait(Leave(conn))

    def add_member(self, member: MemberInfo) -> None:
        self.members[member.user_id] = member

    def remove_member(self, user_id: str) -> None:
        self.members.pop(user_id, None)
        for conn in list(self.connections.values()):
            if conn.user_id == user_id:
                conn.drop(4003, "removed from the room")

    # ---- the actor ------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            batch = [await self.inbox.get()]
            while not self.inbox.empty() and len(batch) < MAX_BATCH:
                batch.append(self.inbox.get_nowait())
            try:
                await self._process(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("room actor failed on a batch", extra={"room_id": self.room_id})
                await self._reload()

    async def _process(self, batch: list[Op | Join | Leave]) -> None:
        pending: list[tuple[Op, dict[str, Any] | None, int | None]] = []
        for command in batch:
            if isinstance(command, Op):
                self._decide(command, pending)
                continue
            await self._flush(pending)
            pending = []
            if isinstance(command, Join):
                command.done.set_result(await self._join(command.conn, command.resume))
            else:
                self._leave(command.conn)
        await self._flush(pending)

    def _decide(self, op: Op, pending: list[tuple[Op, dict[str, Any] | None, int | None]]) -> None:
        if op.op_id is not None:
            seen = self.state.seen(op.actor.user_id, op.op_id)
            if seen is not None:
                pending.append((op, None, seen))  # a retry: ack again once what precedes it is stored
                return
        try:
            members = {m.user_id: m.role for m in self.members.values()}
            decision = decide(self.state, op.actor, op.kind, op.payload, limits=self.limits, members=members)
        except OpRejected as rejection:
            self._reply_error(op, rejection)
            return
        event = {
            "seq": self.state.seq + 1,
            "kind": decision.kind,
            "user": op.actor.user_id,
            "op_id": op.op_id,
            "ts": now_ms(),
            "data": decision.data,
        }
        evolve(self.state, event)
        pending.append((op, event, None))

    async def _flush(self, pending: list[tuple[Op, dict[str, Any] | None, int | None]]) -> None:
        if not pending:
            return
        events = [event for _, event, _ in pending if event is not None]
        if events:
            base = events[0]["seq"] - 1
            try:
                await self.writer.append(self.room_id, base, events)
            except SeqConflict:
                # Another instance wrote first: catch up from the log and decide these ops again.
                await self._reload()
                retry: list[tuple[Op, dict[str, Any] | None, int | None]] = []
                for op, _, _ in pending:
                    self._decide(op, retry)
                await self._flush(retry)
                return
            except Exception as exc:
                log.exception("could not persist room events", extra={"room_id": self.room_id})
                await self._reload()
                for op, _, _ in pending:
                    self._reply_error(
                        op, OpRejected(ErrorCode.INTERNAL, f"not stored, try again: {type(exc).__name__}")
                    )
                return
        for op, event, seen in pending:
            if event is not None:
                frame = dumps({"type": "event", **event})
                self.recent.append((event["seq"], frame))
                await self.bus.publish(
                    self.room_id, {"origin": self.bus.instance_id, "kind": "event", "seq": event["seq"], "frame": frame}
                )
                self._after_event(event)
                seq = event["seq"]
            else:
                seq = seen
            self._ack(op, seq, duplicate=event is None)

    def _after_event(self, event: dict[str, Any]) -> None:
        if event["kind"] == "room.archived":
            for conn in self.connections.values():
                conn.role = "observer"
        if event["kind"] == "presenter.changed" and event["data"]["presenter"] is None:
            self.camera = None

    def _ack(self, op: Op, seq: int | None, *, duplicate: bool) -> None:
        if op.done is not None and not op.done.done():
            op.done.set_result({"seq": seq})
        if op.conn is None:
            return
        frame: dict[str, Any] = {"type": "ack", "op_id": op.op_id, "seq": seq}
        if duplicate:
            frame["duplicate"] = True
        op.conn.push(dumps(frame))
        self.metrics.op_latency.observe(time.perf_counter() - op.received_s)

    def _reply_error(self, op: Op, rejection: OpRejected) -> None:
        if op.done is not None and not op.done.done():
            op.done.set_exception(rejection)
        self.metrics.errors.labels(code=str(rejection.code)).inc()
        if op.conn is not None:
            op.conn.push(dumps(rejection.to_frame(op.op_id)))

    # ---- bus ------------------------------------------------------------------------------------
    def _on_bus(self, message: dict[str, Any]) -> None:
        frame = message["frame"]
        if message["kind"] == "event":
            targets = list(self.connections.values())
            for conn in targets:
                conn.push(frame)
        else:
            key = message.get("key")
            sender = message.get("user")
            targets = [c for c in self.connections.values() if c.user_id != sender]
            for conn in targets:
                if key is None:
                    conn.push(frame)
                else:
                    conn.push_latest(key, frame)
        self.metrics.messages_out.inc(len(targets))

    async def publish_ephemeral(self, frame: dict[str, Any], *, user: str | None, key: Any = None) -> None:
        message = {"origin": self.bus.instance_id, "kind": "ephemeral", "frame": dumps(frame), "user": user, "key": key}
        await self.bus.publish(self.room_id, message)

    # ---- presence, joins and leaves ---------------------------------------------------------------
    def presence_list(self) -> list[dict[str, Any]]:
        return [
            {
                "user": uid,
                "status": self.presence.get(uid, "active"),
                "color": user_color(uid),
                "name": self.members[uid].display_name if uid in self.members else uid,
            }
            for uid in sorted(self.online_users)
        ]

    def members_list(self) -> list[dict[str, Any]]:
        return [
            {
                "user": m.user_id,
                "name": m.display_name,
                "site": m.site_id,
                "role": m.role,
                "color": user_color(m.user_id),
            }
            for m in self.members.values()
        ]

    async def _join(self, conn: Connection, resume: dict[str, Any] | None) -> bool:
        first_of_user = conn.user_id not in self.online_users
        if first_of_user and len(self.online_users) >= self.settings.room_max_online:
            self.metrics.errors.labels(code="room_full").inc()
            conn.push(
                dumps(
                    {
                        "type": "error",
                        "code": "room_full",
                        "message": f"room is full ({self.settings.room_max_online} online)",
                    }
                )
            )
            conn.drop(CLOSE_ROOM_FULL, "room full")
            return False
        you = {"user": conn.user_id, "role": conn.role, "color": user_color(conn.user_id), "conn": conn.id}
        limits = self.client_limits()
        missed = await self._missed_frames(resume)
        if missed is None:
            snapshot = {
                **self.state.snapshot(),
                "members": self.members_list(),
                "presence": self.presence_list(),
                "camera": self.camera,
            }
            conn.push(
                dumps(
                    {
                        "type": "welcome",
                        "protocol": PROTOCOL_VERSION,
                        "room": self.room_info,
                        "you": you,
                        "epoch": self.epoch,
                        "seq": self.state.seq,
                        "limits": limits,
                        "snapshot": snapshot,
                    }
                )
            )
        else:
            header = {
                "type": "resumed",
                "protocol": PROTOCOL_VERSION,
                "room": self.room_info,
                "you": you,
                "epoch": self.epoch,
                "from_seq": resume["seq"] if resume else 0,
                "seq": self.state.seq,
                "limits": limits,
            }
            header.update(
                members=self.members_list(),
                presence=self.presence_list(),
                camera=self.camera,
                presenter=self.state.presenter,
            )
            conn.push(dumps(header))
            for frame in missed:
                conn.push(frame)
        self.connections[conn.id] = conn
        self.metrics.connections.inc()
        self._cancel_timer(("presenter-release", conn.user_id))
        if first_of_user:
            self.presence[conn.user_id] = "active"
            self._presence_changed(conn.user_id, "online")
        return True

    def client_limits(self) -> dict[str, Any]:
        s = self.settings
        return {
            "rate_per_s": s.ws_rate_per_s,
            "burst": s.ws_rate_burst,
            "max_message_bytes": s.ws_max_message_bytes,
            "pointer_max_hz": s.pointer_max_hz,
            "camera_max_hz": s.camera_max_hz,
        }

    async def _missed_frames(self, resume: dict[str, Any] | None) -> list[str] | None:
        """The frames a resuming client missed, or None when it must take a fresh snapshot."""
        if not resume or resume.get("epoch") != self.epoch:
            return None
        since = resume.get("seq")
        if not isinstance(since, int) or since < 0 or since > self.state.seq:
            return None
        if self.state.seq - since > self.settings.room_resume_max_ops:
            return None
        if since == self.state.seq:
            return []
        if self.recent and self.recent[0][0] <= since + 1:
            return [frame for seq, frame in self.recent if seq > since]
        events = await self.db.run_read(self.log.events_after, self.room_id, since)  # older than memory
        return [dumps({"type": "event", **event}) for event in events]

    def _leave(self, conn: Connection) -> None:
        if self.connections.pop(conn.id, None) is None:
            return
        self.metrics.connections.dec()
        if conn.user_id in self.online_users:
            return
        self.presence.pop(conn.user_id, None)
        self._presence_changed(conn.user_id, "offline")
        if self.state.presenter == conn.user_id:
            # Hand the room back after a grace period, so a network blip does not cost the presenter role.
            loop = asyncio.get_running_loop()
            self._timers[("presenter-release", conn.user_id)] = loop.call_later(
                self.settings.presenter_grace_s, self._release_presenter_if_gone, conn.user_id
            )

    def _release_presenter_if_gone(self, user_id: str) -> None:
        self._timers.pop(("presenter-release", user_id), None)
        if self.state.presenter == user_id and user_id not in self.online_users:
            self.inbox.put_nowait(Op(None, Actor(SYSTEM_USER, "system"), None, "presenter.release", {}))

    def _cancel_timer(self, key: Any) -> None:
        timer = self._timers.pop(key, None)
        if timer:
            timer.cancel()

    def _presence_changed(self, user_id: str, status: str) -> None:
        name = self.members[user_id].display_name if user_id in self.members else user_id
        frame = {"type": "presence", "user": user_id, "status": status, "color": user_color(user_id), "name": name}
        asyncio.get_running_loop().create_task(self.publish_ephemeral(frame, user=None))

    def set_presence(self, conn: Connection, status: str) -> None:
        if self.presence.get(conn.user_id) != status:
            self.presence[conn.user_id] = status
            self._presence_changed(conn.user_id, status)

    # ---- pointer and camera: ephemeral, throttled per connection, latest wins ---------------------
    def pointer(self, conn: Connection, payload: dict[str, Any]) -> None:
        frame = {"type": "pointer", "user": conn.user_id, "color": user_color(conn.user_id), **payload}
        self._throttled(conn, "pointer", frame, self.settings.pointer_max_hz, ("pointer", conn.user_id))

    def camera_update(self, conn: Connection, payload: dict[str, Any]) -> None:
        if self.state.presenter != conn.user_id:
            raise OpRejected(ErrorCode.NOT_PRESENTER, "only the presenter moves the shared camera")
        self.camera = {"user": conn.user_id, **payload}
        frame = {"type": "camera", **self.camera}
        self._throttled(conn, "camera", frame, self.settings.camera_max_hz, ("camera",))

    def _throttled(self, conn: Connection, kind: str, frame: dict[str, Any], max_hz: float, key: Any) -> None:
        """Send at most max_hz per connection; in between keep only the newest and send it when due."""
        timer_key = (kind, conn.id)
        attr = f"last_{kind}_s"
        now = time.monotonic()
        due = getattr(conn, attr) + 1.0 / max_hz
        if now >= due and timer_key not in self._timers:
            setattr(conn, attr, now)
            asyncio.get_running_loop().create_task(self.publish_ephemeral(frame, user=conn.user_id, key=key))
            return
        self._pending_ephemeral[timer_key] = (frame, key, conn)
        if timer_key not in self._timers:
            self._timers[timer_key] = asyncio.get_running_loop().call_later(
                max(0.0, due - now), self._flush_ephemeral, timer_key, attr
            )

    def _flush_ephemeral(self, timer_key: Any, attr: str) -> None:
        self._timers.pop(timer_key, None)
        pending = self._pending_ephemeral.pop(timer_key, None)
        if pending is None:
            return
        frame, key, conn = pending
        setattr(conn, attr, time.monotonic())
        asyncio.get_running_loop().create_task(self.publish_ephemeral(frame, user=conn.user_id, key=key))
