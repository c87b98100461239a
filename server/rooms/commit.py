"""A room's ops from decision to acknowledgement: decide, persist, then deliver and acknowledge.

Mixed into RoomHub. Two ways in, one order:
- the actor (rooms/hub.py) decides a batch of queued ops and awaits its append;
- `offer` decides an op at once, in the socket's read callback, when nothing is ahead of it (the actor
  is idle, nothing is queued): its events join this room's `InlineBatch`, handed to the group commit
  without awaiting (rooms/group_commit.py), and are delivered and acknowledged from the commit's
  callback. Until the writer takes that batch, later ops decided at once join it; after that, and
  until it is stored, ops are queued, and the actor waits for it before carrying out what is queued.
  On a loaded loop that saves several trips around it per op (the actor's and the writer's task
  wake-ups, and theirs back).
A conflict (another instance stored first) or a failed write is recovered the same way on both
paths, by the actor's rules: roll back, decide again, or reject with `internal`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from server.core.db import now_ms
from server.rooms.frames import dumps
from server.rooms.locked_batch import LockedBatch
from server.rooms.protocol import ErrorCode, OpRejected
from server.rooms.state import Limits, RoomRole, RoomState, decide, evolve
from server.rooms.store import SeqConflict

if TYPE_CHECKING:
    from server.core.bus import EventBus
    from server.core.metrics import Metrics
    from server.rooms.commands import MemberInfo, Op
    from server.rooms.forwarding import Leadership
    from server.rooms.group_commit import GroupCommitWriter, PendingAppend

log = logging.getLogger("trinity.rooms")
Pending = list[tuple["Op", dict[str, Any] | None, int | None]]  # (op, its event | None, a duplicate's seq)


class InlineBatch:
    """Ops decided at once whose events wait for one commit."""

    __slots__ = ("_waiter", "append", "events", "pending")

    def __init__(self) -> None:
        self.pending: Pending = []
        self.events: list[dict[str, Any]] = []
        self.append: PendingAppend | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def open(self) -> bool:
        """More ops may join: the writer has not taken the events yet."""
        return self.append is None or not self.append.taken

    async def wait(self) -> None:
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._waiter)

    def finish(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class RoomCommits:
    room_id: str
    state: RoomState
    limits: Limits
    members: dict[str, MemberInfo]
    _roles: dict[str, RoomRole] | None
    writer: GroupCommitWriter
    bus: EventBus
    metrics: Metrics
    leadership: Leadership
    inbox: asyncio.Queue[Any]
    _busy: bool
    _decide_locked: bool
    _inline: InlineBatch | None
    _recovering: asyncio.Task[None] | None = None  # an inline batch's recovery (kept: tasks are weakly held)

    if TYPE_CHECKING:  # provided by RoomHub

        def _deliver(self, event: dict[str, Any], frame: str) -> None: ...
        def _stored(self, *events: dict[str, Any]) -> None: ...
        async def _rollback(self) -> None: ...
        async def _reload(self) -> None: ...

    # ---- deciding at once -----------------------------------------------------------------------
    def offer(self, op: Op) -> None:
        """Forward `op` to the room's leader, decide it now, or queue it for the actor, whichever
        keeps it behind everything that came before it."""
        nothing_ahead = not self._busy and self.inbox.empty()
        batch = self._inline
        if nothing_ahead and batch is None and self.leadership.forward(op):
            return  # straight to the leader: nothing queued here that it could overtake
        if not nothing_ahead or (batch is not None and not batch.open) or self._must_lock():
            self.inbox.put_nowait(op)
            return
        if batch is None:
            batch = self._inline = InlineBatch()
        before = len(batch.pending)
        self._decide(op, batch.pending)
        if len(batch.pending) == before:  # rejected, and answered
            if batch.append is None and not batch.pending:
                self._inline = None
            return
        event = batch.pending[-1][1]
        if event is not None:
            batch.events.append(event)  # the writer takes the list as it is when it commits
            if batch.append is None:
                batch.append = self.writer.append_soon(self.room_id, event["seq"] - 1, batch.events, self._inline_done)
        elif batch.append is None:  # a duplicate, nothing in flight before it: acknowledged now
            self._inline = None
            self._publish_stored(batch.pending, [])

    def _must_lock(self) -> bool:
        """Not leading a room shared on PostgreSQL: decide under its row lock (the actor's path)."""
        return self._decide_locked and not self.leadership.leading

    def _inline_done(self, error: BaseException | None) -> None:
        batch = self._inline
        assert batch is not None
        if error is None:
            self._inline = None
            try:
                self._publish_stored(batch.pending, batch.events)
            finally:
                batch.finish()  # the actor must never wait for a batch that is over
            return
        self._recovering = asyncio.get_running_loop().create_task(self._recover_inline(batch, error))

    async def _recover_inline(self, batch: InlineBatch, error: BaseException) -> None:
        try:
            await self._recover(batch.pending, error)
        except Exception as exc:
            # What the actor does when a batch fails: rebuild from the log, refuse what is unanswered.
            log.exception("recovering a room's batch failed", extra={"room_id": self.room_id})
            with contextlib.suppress(Exception):
                await self._reload()
            for op, _, _ in batch.pending:
                self._reply_error(op, OpRejected(ErrorCode.INTERNAL, f"not stored, try again: {type(exc).__name__}"))
        finally:
            self._inline = None  # only now may the actor go on
            batch.finish()

    # ---- the actor's path -----------------------------------------------------------------------
    def _decide(self, op: Op, pending: Pending) -> None:
        if op.op_id is not None:
            seen = self.state.seen(op.actor.user_id, op.op_id)
            if seen is not None:
                pending.append((op, None, seen))  # a retry: ack again once what precedes it is stored
                return
        try:
            if self._roles is None:
                self._roles = {m.user_id: m.role for m in self.members.values()}
            decision = decide(self.state, op.actor, op.kind, op.payload, limits=self.limits, members=self._roles)
        except OpRejected as rejection:
            self._reply_error(op, rejection)
            return
        except Exception:
            # A bug in the pure core on input it did not expect (decide changes nothing before it
            # returns): refuse the op; raising here would leave the room's batch half made.
            log.exception("deciding an op failed", extra={"room_id": self.room_id})
            self._reply_error(op, OpRejected(ErrorCode.INTERNAL, "the op could not be decided"))
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

    async def _flush(self, pending: Pending) -> None:
        if not pending:
            return
        events = [event for _, event, _ in pending if event is not None]
        if events:
            try:
                await self.writer.append(self.room_id, events[0]["seq"] - 1, events)
            except Exception as exc:
                await self._recover(pending, exc)
                return
        self._publish_stored(pending, events)

    async def _recover(self, pending: Pending, error: BaseException) -> None:
        """The events of `pending` were not stored."""
        if isinstance(error, SeqConflict):
            # Another instance wrote first: roll back to what is stored, catch up, decide these ops again.
            self.metrics.seq_conflicts.inc()
            await self._rollback()
            retry: Pending = []
            for op, _, _ in pending:
                self._decide(op, retry)
            await self._flush(retry)
            return
        log.error("could not persist room events", exc_info=error, extra={"room_id": self.room_id})
        await self._reload()
        for op, _, _ in pending:
            self._reply_error(op, OpRejected(ErrorCode.INTERNAL, f"not stored, try again: {type(error).__name__}"))

    async def _flush_locked(self, ops: list[Op]) -> None:
        """Several instances on PostgreSQL: the writer locks the room's row, hands over what other
        instances stored since this state (applied and delivered here first), and the ops are decided
        only then, on the current state: nothing speculative, so nothing to roll back or retry."""
        if not ops:
            return
        batch = LockedBatch(self, ops)  # type: ignore[arg-type]
        try:
            await self.writer.append_locked(self.room_id, self.state.seq, batch.decide)
        except Exception as exc:
            log.exception("could not persist room events", extra={"room_id": self.room_id})
            await self._reload()
            for op in ops:
                self._reply_error(op, OpRejected(ErrorCode.INTERNAL, f"not stored, try again: {type(exc).__name__}"))
            return
        self._publish_stored(batch.pending, [event for _, event, _ in batch.pending if event is not None])

    def _publish_stored(self, pending: Pending, events: list[dict[str, Any]]) -> None:
        # Deliver and acknowledge locally, and hand each event to the bus without waiting: it goes out
        # in order with the next pipelined write to Redis, while the actor goes on with the next batch.
        self._stored(*events)
        for op, event, seen in pending:
            if event is not None:
                frame = dumps({"type": "event", **event})
                self._deliver(event, frame)
                message = {"origin": self.bus.instance_id, "kind": "event", "seq": event["seq"], "frame": frame}
                self.bus.publish_nowait(self.room_id, message)
                seq = event["seq"]
            else:
                seq = seen
            self._ack(op, seq, duplicate=event is None)

    def _ack(self, op: Op, seq: int | None, *, duplicate: bool) -> None:
        if op.reply_to is not None and duplicate:
            self.leadership.reply(op, seq=seq)  # a new op's event answers by itself
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
        if op.reply_to is not None:
            self.leadership.reply(op, error=rejection.to_frame())
        if op.conn is not None:
            op.conn.push(dumps(rejection.to_frame(op.op_id)))
