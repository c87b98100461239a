"""Ops of one room decided under its row lock, when several instances write to it on PostgreSQL.

The writer (rooms/store_pg.py) locks the room's row, reads what other instances stored since the
hub's state, and calls `decide`: those events are applied and delivered first, then the ops are decided
on the current state. Nothing is decided speculatively, so nothing is rolled back or retried.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.rooms.frames import dumps
from server.rooms.state import evolve
from server.rooms.store import SeqConflict

if TYPE_CHECKING:
    from server.rooms.commands import Op
    from server.rooms.hub import RoomHub


class LockedBatch:
    """Ops to decide once the writer holds the room's row lock (rooms/store_pg.py)."""

    def __init__(self, hub: RoomHub, ops: list[Op]) -> None:
        self.hub = hub
        self.ops = ops
        self.pending: list[tuple[Op, dict[str, Any] | None, int | None]] = []

    def decide(self, missing: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`missing`: what other instances stored after this hub's state; returns the events to store.
        Called again if the transaction is retried, on the state left by the first call."""
        hub = self.hub
        if missing:
            hub.metrics.seq_conflicts.inc()
        # A retried transaction: what the first call decided was not stored.
        if self.pending and not hub._restore_stored():
            raise SeqConflict(hub.room_id)
        for event in missing:
            if event["seq"] == hub.state.seq + 1:
                evolve(hub.state, event)
                hub._stored(event)
                hub._deliver(event, dumps({"type": "event", **event}))
        self.pending = []
        for op in self.ops:
            hub._decide(op, self.pending)
        return [event for _, event, _ in self.pending if event is not None]
