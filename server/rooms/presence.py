"""The live side of a room beyond its log: joins and resumes, leaves, presence, pointers, camera.

Mixed into RoomHub; everything here runs on the hub's actor task or the event loop, never in parallel.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from server.core.bus import ephemeral_message
from server.rooms.connection import Connection
from server.rooms.frames import dumps, user_color
from server.rooms.protocol import CLOSE_ROOM_FULL, PROTOCOL_VERSION, ErrorCode, OpRejected
from server.rooms.state import RoomRole, RoomState

if TYPE_CHECKING:
    from server.core.bus import EventBus
    from server.core.db import Database
    from server.core.metrics import Metrics
    from server.rooms.commands import MemberInfo, Op
    from server.rooms.store import RoomLog
    from server.settings import Settings


class RoomPresence:
    room_id: str
    settings: Settings
    metrics: Metrics
    db: Database
    log: RoomLog
    state: RoomState
    epoch: str
    room_info: dict[str, Any]
    members: dict[str, MemberInfo]
    _roles: dict[str, RoomRole] | None
    connections: dict[int, Connection]
    presence: dict[str, str]
    camera: dict[str, Any] | None
    recent: deque[tuple[int, str]]
    inbox: asyncio.Queue[Any]
    _timers: dict[Any, asyncio.TimerHandle]
    bus: EventBus
    remote_presence: dict[str, dict[str, Any]]
    _pending_ephemeral: dict[Any, tuple[dict[str, Any], Any, Connection]]

    def add_member(self, member: MemberInfo) -> None:
        self.members[member.user_id] = member
        self._roles = None

    def remove_member(self, user_id: str) -> None:
        self.members.pop(user_id, None)
        self._roles = None
        for conn in list(self.connections.values()):
            if conn.user_id == user_id:
                conn.drop(4003, "removed from the room")

    def fan_out_ephemeral(self, message: dict[str, Any]) -> None:
        """An ephemeral bus message (pointer, camera, presence, job progress) to this instance's clients,
        except its sender; keyed ones only as their latest value."""
        frame, key, sender = message["frame"], message.get("key"), message.get("user")
        targets = [c for c in self.connections.values() if c.user_id != sender]
        for conn in targets:
            if key is None:
                conn.push(frame)
            else:
                conn.push_latest(key, frame)
        self.metrics.messages_out.inc(len(targets))

    def publish_ephemeral_nowait(self, frame: dict[str, Any], *, user: str | None, key: Any = None) -> None:
        self.bus.publish_nowait(self.room_id, ephemeral_message(self.bus.instance_id, dumps(frame), user=user, key=key))

    @property
    def online_users(self) -> set[str]:
        """Users connected to this instance."""
        return {c.user_id for c in self.connections.values()}

    @property
    def room_online_users(self) -> set[str]:
        """Users connected to any live instance."""
        return self.online_users | set(self.remote_presence)

    async def presence_heartbeat(self) -> None:
        """Share this instance's online users and learn the others'; users of an instance that
        stopped answering go offline for our clients once its entry expires."""
        while True:
            local = {uid: {"status": self.presence.get(uid, "active")} for uid in self.online_users}
            remote = await self.bus.share_presence(self.room_id, local, self.settings.presence_ttl_s)
            if remote is not None:
                self._apply_remote_presence(remote)
            await asyncio.sleep(self.settings.presence_heartbeat_s)

    def _apply_remote_presence(self, remote: dict[str, dict[str, Any]]) -> None:
        before, self.remote_presence = self.remote_presence, remote
        local = self.online_users
        changes = [(u, "online") for u in remote if u not in before and u not in local]
        changes += [(u, "offline") for u in before if u not in remote and u not in local]
        for user_id, status in changes:
            frame = dumps(self._presence_frame(user_id, status))
            for conn in self.connections.values():
                conn.push(frame)

    def _presence_frame(self, user_id: str, status: str) -> dict[str, Any]:
        name = self.members[user_id].display_name if user_id in self.members else user_id
        return {"type": "presence", "user": user_id, "status": status, "color": user_color(user_id), "name": name}

    def _system_op(self, kind: str) -> Op:
        raise NotImplementedError

    # ---- presence, joins and leaves ---------------------------------------------------------------
    def presence_list(self) -> list[dict[str, Any]]:
        return [
            {
                **self._presence_frame(
                    uid, self.presence.get(uid) or self.remote_presence.get(uid, {}).get("status", "active")
                ),
            }
            for uid in sorted(self.room_online_users)
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
        if conn.user_id not in self.room_online_users and len(self.room_online_users) >= self.settings.room_max_online:
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
            self.inbox.put_nowait(self._system_op("presenter.release"))

    def _cancel_timer(self, key: Any) -> None:
        timer = self._timers.pop(key, None)
        if timer:
            timer.cancel()

    def _presence_changed(self, user_id: str, status: str) -> None:
        frame = self._presence_frame(user_id, status)
        self.publish_ephemeral_nowait(frame, user=None)

    def set_presence(self, conn: Connection, status: str) -> None:
        if self.presence.get(conn.user_id) != status:
            self.presence[conn.user_id] = status
            self._presence_changed(conn.user_id, status)

    # ---- pointer and camera: ephemeral, throttled per connection, latest wins ---------------------
    def pointer(self, conn: Connection, payload: dict[str, Any]) -> None:
        frame = {"type": "pointer", "user": conn.user_id, "color": user_color(conn.user_id), **payload}
        self._throttled(conn, "pointer", frame, self.settings.pointer_max_hz, f"pointer:{conn.user_id}")

    def camera_update(self, conn: Connection, payload: dict[str, Any]) -> None:
        if self.state.presenter != conn.user_id:
            raise OpRejected(ErrorCode.NOT_PRESENTER, "only the presenter moves the shared camera")
        self.camera = {"user": conn.user_id, **payload}
        frame = {"type": "camera", **self.camera}
        self._throttled(conn, "camera", frame, self.settings.camera_max_hz, "camera")

    def _throttled(self, conn: Connection, kind: str, frame: dict[str, Any], max_hz: float, key: Any) -> None:
        """Send at most max_hz per connection; in between keep only the newest and send it when due."""
        timer_key = (kind, conn.id)
        attr = f"last_{kind}_s"
        now = time.monotonic()
        due = getattr(conn, attr) + 1.0 / max_hz
        if now >= due and timer_key not in self._timers:
            setattr(conn, attr, now)
            self.publish_ephemeral_nowait(frame, user=conn.user_id, key=key)
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
        self.publish_ephemeral_nowait(frame, user=conn.user_id, key=key)
