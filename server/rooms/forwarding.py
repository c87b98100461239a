"""One instance decides a room's ops; the others forward theirs to it (several instances only).

Why: two instances writing one room take turns on its row lock, and under load that alternation
cost seconds per op. The leader is whoever holds the room's lease on the bus (a key with a TTL that it
renews, `EventBus.claim_leadership`). Another instance sends each op to it over the room's stream and
acknowledges its client when the stored event comes back the same way, or when a reply does (a
rejection, or the sequence of a duplicate). The lease is only about speed: the log still refuses an
append on a stale sequence, so two instances that both think they lead (a handover) stay correct.
An op is routed again when the lease changes hands or when its leader has not answered within a lease;
after two leases without an answer it is decided here, under the room's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from server.rooms.commands import Op, Reply
from server.rooms.protocol import ErrorCode, OpRejected
from server.rooms.state import Actor

if TYPE_CHECKING:
    from server.rooms.hub import RoomHub


class Leadership:
    def __init__(self, hub: RoomHub, lease_s: float) -> None:
        self.hub = hub
        self.bus = hub.bus
        self.me = hub.bus.instance_id
        self.enabled = hub.bus.shared
        self.lease_s = lease_s
        self.leader: str | None = self.me  # None: unknown (the bus is away), so ops are decided here
        self.forwarded: dict[tuple[str, str], tuple[Op, float]] = {}  # (user, op id) -> op, last sent
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        """This instance holds the room's lease: it decides ops optimistically (conflicts are rare)."""
        return self.enabled and self.leader == self.me

    async def start(self) -> None:
        if not self.enabled:
            return
        self.leader = await self.bus.claim_leadership(self.hub.room_id, self.lease_s)
        self._task = asyncio.create_task(self._keep(), name=f"lease-{self.hub.room_id}")

    async def close(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self.leader == self.me:
            await self.bus.release_leadership(self.hub.room_id)
            self._send({"kind": "leader", "leader": None})  # the others claim it now, not at their next renewal
        for op, _ in self.forwarded.values():
            self.hub._reply_error(op, OpRejected(ErrorCode.INTERNAL, "not stored, try again: the room was unloaded"))
        self.forwarded.clear()

    # ---- the forwarding side --------------------------------------------------------------------
    def forward(self, op: Op) -> bool:
        """Send `op` to the room's leader; False when it is to be decided here."""
        leader = self.leader
        if leader is None or leader == self.me or op.op_id is None:
            return False
        user = op.actor.user_id
        if self.hub.state.seen(user, op.op_id) is not None:
            return False  # a retry of a stored op: acknowledged here, as a duplicate
        now = time.monotonic()
        if op.forwarded_s is None:
            op.forwarded_s = now
        elif now - op.forwarded_s > 2 * self.lease_s:
            return False  # no leader answered for two leases: decide it here, under the room's lock
        self.forwarded[(user, op.op_id)] = (op, now)
        self.hub.metrics.ops_forwarded.inc()
        message = {"to": leader, "user": user, "role": op.actor.role, "op_id": op.op_id, "op": op.kind}
        self._send({"kind": "op", **message, "payload": op.payload})
        return True

    def settle(self, event: dict[str, Any]) -> None:
        """A stored event was delivered here: acknowledge it if this instance forwarded its op."""
        op_id = event.get("op_id")
        if op_id is None:
            return
        entry = self.forwarded.pop((event["user"], op_id), None)
        if entry is not None:
            self.hub._ack(entry[0], event["seq"], duplicate=False)

    async def answer(self, message: dict[str, Any]) -> None:
        """The leader's reply to a forwarded op (run by the room's actor, in stream order)."""
        entry = self.forwarded.pop((message["user"], message["op_id"]), None)
        if entry is None:
            return
        op = entry[0]
        error = message.get("error")
        if error is not None:
            rejection = OpRejected(ErrorCode(error["code"]), error["message"], **(error.get("details") or {}))
            self.hub._reply_error(op, rejection)
            return
        if message["seq"] > self.hub.delivered_seq:
            await self.hub._catch_up()  # acknowledge only what this instance's clients can already see
        self.hub._ack(op, message["seq"], duplicate=True)

    # ---- the leading side -----------------------------------------------------------------------
    def on_message(self, message: dict[str, Any]) -> None:
        """A bus message of kind op, reply or leader (called by the bus, outside the actor)."""
        kind = message["kind"]
        if kind == "leader":
            self._wake.set()
            return
        if message.get("to") != self.me:
            return
        if kind == "reply":
            self.hub.inbox.put_nowait(Reply(message))
            return
        actor = Actor(message["user"], message["role"])
        op = Op(None, actor, message["op_id"], message["op"], message["payload"], reply_to=message["origin"])
        self.hub.offer(op)

    def reply(self, op: Op, *, seq: int | None = None, error: dict[str, Any] | None = None) -> None:
        """Answer an op another instance forwarded, when no stored event will (duplicate or rejected)."""
        assert op.reply_to is not None and op.op_id is not None
        message: dict[str, Any] = {"kind": "reply", "to": op.reply_to, "user": op.actor.user_id, "op_id": op.op_id}
        if error is not None:
            message["error"] = error
        else:
            message["seq"] = seq
        self._send(message)

    # ---- the lease ------------------------------------------------------------------------------
    async def _keep(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races it.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.lease_s / 3):
                    await self._wake.wait()
            self._wake.clear()
            leader = await self.bus.claim_leadership(self.hub.room_id, self.lease_s)
            changed, self.leader = leader != self.leader, leader
            now = time.monotonic()
            for key, (op, sent) in list(self.forwarded.items()):
                if changed or now - sent > self.lease_s:
                    del self.forwarded[key]
                    self.hub.inbox.put_nowait(op)  # routed again: to the new leader, or decided here

    def _send(self, message: dict[str, Any]) -> None:
        self.bus.publish_nowait(self.hub.room_id, {"origin": self.me, **message})
