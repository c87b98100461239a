"""A room's live side in this instance: one actor task applies its ops one at a time, in server order.

Flow of an op: the WebSocket edge decodes and authorizes -> `RoomHub.submit` -> decided against the
state (pure core) and evolved, at once when nothing is ahead of it, else by the actor in a batch ->
persisted through the group commit (before any acknowledgement) -> each event delivered, published on
the bus, and the sender acknowledged (rooms/commit.py). Bus deliveries fan out to this instance's
connections. Joins run inside the same actor, so a joining or resuming client sees
every event exactly once and in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

import orjson

from server.core.bus import EventBus
from server.core.db import Database
from server.core.metrics import Metrics
from server.rooms.commands import Command, Join, Leave, MemberInfo, Op, Remote, Reply, Resync
from server.rooms.commit import InlineBatch, RoomCommits
from server.rooms.connection import Connection
from server.rooms.forwarding import Leadership
from server.rooms.frames import dumps
from server.rooms.group_commit import GroupCommitWriter
from server.rooms.presence import RoomPresence
from server.rooms.state import SYSTEM_USER, Actor, Limits, RoomRole, RoomState, evolve, replay
from server.rooms.store import RoomLog
from server.settings import Settings

log = logging.getLogger("trinity.rooms")

RECENT_FRAMES = 2000
CHECKPOINT_EVERY = (
    1000  # stored events between two copies of the state; a rollback (rare: a leader handover) replays up to this many
)
MAX_BATCH = 256


class RoomHub(RoomPresence, RoomCommits):
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
        # A copy of a stored state and the stored events since: a write that loses the race to another
        # instance rolls back to it instead of replaying the whole log. Only kept when other instances
        # write too (a shared bus): alone, nothing is ever rolled back, and copies cost collector time.
        self._keep_checkpoints = bus.shared
        # Not leading a shared room on PostgreSQL (the bus is away, or an op without an id at a follower):
        # decide under the room's row lock rather than race the leader.
        self._decide_locked = bus.shared and writer.locks_rooms
        self._checkpoint = RoomState()
        self._since_checkpoint: list[dict[str, Any]] = []
        self.epoch = ""
        self.members: dict[str, MemberInfo] = {}
        self._roles: dict[str, RoomRole] | None = None  # user -> role, rebuilt when membership changes
        self.connections: dict[int, Connection] = {}
        self.presence: dict[str, str] = {}  # user -> active | idle
        self.camera: dict[str, Any] | None = None
        self.recent: deque[tuple[int, str]] = deque(maxlen=RECENT_FRAMES)
        self.inbox: asyncio.Queue[Command] = asyncio.Queue()
        self.delivered_seq = 0  # the last event fanned out to this instance's connections
        self.remote_presence: dict[str, dict[str, Any]] = {}  # users online on other instances
        self._heartbeat: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._timers: dict[Any, asyncio.TimerHandle] = {}
        self._pending_ephemeral: dict[Any, tuple[dict[str, Any], Any, Connection]] = {}
        self.leadership = Leadership(self, settings.room_lease_s)
        self._busy = False  # the actor is carrying out a batch
        self._inline: InlineBatch | None = None  # ops decided at once, waiting for their commit

    # ---- lifecycle ------------------------------------------------------------------------------
    async def load(self, members: list[MemberInfo]) -> None:
        await self._reload()
        self.members = {m.user_id: m for m in members}
        self._roles = None
        await self.bus.subscribe(self.room_id, self._on_bus)
        await self.leadership.start()
        self._task = asyncio.create_task(self._run(), name=f"room-{self.room_id}")
        self._heartbeat = asyncio.create_task(self.presence_heartbeat(), name=f"presence-{self.room_id}")

    async def _reload(self) -> None:
        """Rebuild the state from the log (dropping anything evolved but not stored) and deliver what
        this instance's clients have not seen yet (events another instance stored meanwhile)."""
        epoch, _seq, _archived = await self.db.run_read(self.log.head, self.room_id)
        events = await self.db.run_read(self.log.events_after, self.room_id, 0)
        self.epoch = epoch
        self.state = replay(events)
        self._checkpoint, self._since_checkpoint = (self.state.clone() if self._keep_checkpoints else RoomState()), []
        if not self._task:  # first load: nothing was delivered by this hub yet
            self.delivered_seq = self.state.seq
            for event in events[-RECENT_FRAMES:]:
                self.recent.append((event["seq"], dumps({"type": "event", **event})))
            return
        for event in events:
            if event["seq"] > self.delivered_seq:
                self._deliver(event, dumps({"type": "event", **event}))

    async def _catch_up(self) -> None:
        events = await self.db.run_read(self.log.events_after, self.room_id, self.state.seq)
        for event in events:
            evolve(self.state, event)
            self._stored(event)
            self._deliver(event, dumps({"type": "event", **event}))

    def _stored(self, *events: dict[str, Any]) -> None:
        """`events` are in the log and in `self.state`, with nothing speculative after them."""
        if not self._keep_checkpoints:
            return
        self._since_checkpoint.extend(events)
        if len(self._since_checkpoint) >= CHECKPOINT_EVERY:
            self._checkpoint, self._since_checkpoint = self.state.clone(), []

    def _restore_stored(self) -> bool:
        """Synchronous rollback to what is stored (checkpoint + stored events since); False without
        checkpoints (one instance: nothing to roll back to cheaply)."""
        if not self._keep_checkpoints:
            return False
        self.state = self._checkpoint.clone()
        for event in self._since_checkpoint:
            evolve(self.state, event)
        return True

    async def _rollback(self) -> None:
        """Drop what was evolved but not stored: back to the checkpoint, forward through the stored events
        since, then whatever other instances stored meanwhile (from the log)."""
        if not self._restore_stored():
            await self._reload()  # no checkpoint: rebuild from the log
            return
        await self._catch_up()

    def _deliver(self, event: dict[str, Any], frame: str) -> None:
        """Fan a stored event out to this instance's connections, strictly in sequence order."""
        if event["seq"] != self.delivered_seq + 1:
            return
        self.delivered_seq = event["seq"]
        self.recent.append((event["seq"], frame))
        for conn in self.connections.values():
            conn.push(frame)
        self.metrics.messages_out.inc(len(self.connections))
        self._after_event(event)

    async def close(self) -> None:
        self.bus.unsubscribe(self.room_id, self._on_bus)
        await self.leadership.close()
        for timer in self._timers.values():
            timer.cancel()
        if self._heartbeat:
            self._heartbeat.cancel()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # ---- entry points (called by the WebSocket edge and REST) ------------------------------------
    def submit(self, conn: Connection, op_id: str, kind: str, payload: dict[str, Any]) -> None:
        self.offer(Op(conn, conn.actor, op_id, kind, payload))  # rooms/commit.py

    def idle(self) -> bool:
        """Nothing queued, being carried out or waiting for its commit: a command may be carried out
        right away, in the actor's place, and the room may be unloaded."""
        return not self._busy and self._inline is None and self.inbox.empty()

    def _system_op(self, kind: str) -> Op:
        return Op(None, Actor(SYSTEM_USER, "system"), None, kind, {})

    def resync(self) -> None:
        self.inbox.put_nowait(Resync())

    async def system_op(self, kind: str, payload: dict[str, Any], op_id: str | None = None) -> dict[str, Any]:
        """An op by the server itself; with an op_id, applying it twice (several instances) stores it once."""
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.inbox.put_nowait(Op(None, Actor(SYSTEM_USER, "system"), op_id, kind, payload, done=done))
        return await done

    async def join(self, conn: Connection, resume: dict[str, Any] | None) -> bool:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.inbox.put_nowait(Join(conn, resume, done))
        return await done

    def leave(self, conn: Connection) -> None:
        self.inbox.put_nowait(Leave(conn))

    # ---- the actor ------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            batch = [await self.inbox.get()]
            while not self.inbox.empty() and len(batch) < MAX_BATCH:
                batch.append(self.inbox.get_nowait())
            self._busy = True
            try:
                while self._inline is not None:
                    await self._inline.wait()  # ops decided at once came first (rooms/commit.py)
                await self._process(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("room actor failed on a batch", extra={"room_id": self.room_id})
                await self._reload()
            finally:
                self._busy = False

    async def _process(self, batch: list[Command]) -> None:
        pending: list[tuple[Op, dict[str, Any] | None, int | None]] = []
        deferred: list[Op] = []  # decided under the room's row lock (several instances on PostgreSQL)
        for command in batch:
            if isinstance(command, Op):
                if self.leadership.forward(command):
                    continue  # another instance leads the room: it decides, the event comes back
                if self._must_lock():
                    deferred.append(command)
                else:
                    self._decide(command, pending)
                continue
            await self._flush(pending)
            await self._flush_locked(deferred)
            pending, deferred = [], []
            if isinstance(command, Join):
                command.done.set_result(await self._join(command.conn, command.resume))
            elif isinstance(command, Leave):
                self._leave(command.conn)
            elif isinstance(command, Remote):
                await self._apply_remote(command.frame)
            elif isinstance(command, Reply):
                await self.leadership.answer(command.message)
            else:
                await self._catch_up()
        await self._flush(pending)
        await self._flush_locked(deferred)

    async def _apply_remote(self, frame: str) -> None:
        if not self._apply_next_remote(frame):
            await self._catch_up()  # a gap: the log has everything, in order

    def _apply_next_remote(self, frame: str) -> bool:
        """Apply and deliver another instance's event if it is the next one (or one we have); False on
        a gap, which needs the log."""
        event = orjson.loads(frame)
        event.pop("type", None)
        if event["seq"] > self.state.seq + 1:
            return False
        if event["seq"] == self.state.seq + 1:
            evolve(self.state, event)
            self._stored(event)
            self._deliver(event, frame)
        return True  # older ones: already have it (we caught up from the log first)

    def _after_event(self, event: dict[str, Any]) -> None:
        if event["kind"] == "room.archived":
            for conn in self.connections.values():
                conn.role = "observer"
        if event["kind"] == "presenter.changed" and event["data"]["presenter"] is None:
            self.camera = None
        if self.leadership.forwarded:
            self.leadership.settle(event)

    # ---- bus ------------------------------------------------------------------------------------
    def _on_bus(self, message: dict[str, Any]) -> None:
        kind = message["kind"]
        if kind == "event":
            if message.get("origin") == self.bus.instance_id:
                return  # our own events were delivered when stored
            if not (self.idle() and self._apply_next_remote(message["frame"])):
                self.inbox.put_nowait(Remote(message["frame"]))
            return
        if kind == "ephemeral":
            self.fan_out_ephemeral(message)  # rooms/presence.py
        else:
            self.leadership.on_message(message)  # op, reply or leader: rooms/forwarding.py
