"""The room event log in SQL: append with an optimistic sequence check, read back in order.

`rooms.last_seq` is the serialization point: an append moves it from the sequence the writer saw to
the new one in the same transaction as the event rows, so two writers (two instances) can never give
out the same sequence number; the loser gets SeqConflict, catches up and retries. The appends of all
rooms are batched by rooms/group_commit.py.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Engine

from server.rooms.models import Room, RoomEvent

events_table = RoomEvent.__table__  # type: ignore[attr-defined]
rooms_table = Room.__table__  # type: ignore[attr-defined]


# Built once: constructing SQLAlchemy statements per transaction costs CPU under the GIL.
_MOVE_SEQ = (
    update(rooms_table)
    .where(rooms_table.c.id == bindparam("room"), rooms_table.c.last_seq == bindparam("expected"))
    .values(last_seq=bindparam("new_seq"))
)
_INSERT_EVENTS = insert(events_table)


class SeqConflict(Exception):
    """Another writer appended to the room since this writer last read it."""


def _row_to_event(row: Any) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "kind": row.kind,
        "user": row.user_id,
        "op_id": row.op_id,
        "ts": row.ts_ms,
        "data": orjson.loads(row.data),
    }


class RoomLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def head(self, room_id: str) -> tuple[str, int, bool]:
        """(epoch, last_seq, archived) of a room."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(rooms_table.c.epoch, rooms_table.c.last_seq, rooms_table.c.archived_at_ms).where(
                    rooms_table.c.id == room_id
                )
            ).one()
        return row.epoch, row.last_seq, row.archived_at_ms is not None

    def events_after(self, room_id: str, after_seq: int, limit: int | None = None) -> list[dict[str, Any]]:
        query = (
            select(events_table)
            .where(events_table.c.room_id == room_id, events_table.c.seq > after_seq)
            .order_by(events_table.c.seq)
        )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_row_to_event(row) for row in conn.execute(query)]

    def append(self, room_id: str, expected_seq: int, events: list[dict[str, Any]]) -> None:
        """Persist events (seq expected_seq+1 ...) atomically, or raise SeqConflict."""
        if self.append_many([(room_id, expected_seq, events)]):
            raise SeqConflict(room_id)

    def append_many(self, batches: list[tuple[str, int, list[dict[str, Any]]]]) -> set[str]:
        """Persist several rooms' events in one transaction (one commit, one fsync).

        Returns the rooms whose expected sequence was stale; nothing of theirs is written, everything
        else is. A stale room found mid-transaction rolls the whole transaction back and it is retried
        without that room, since another instance may append between our read and our write.
        """
        conflicts: set[str] = set()
        while True:
            # Rooms in id order: two instances locking the same rooms always lock them in the same order.
            todo = sorted((b for b in batches if b[0] not in conflicts and b[2]), key=lambda b: b[0])
            if not todo:
                return conflicts
            try:
                with self.engine.begin() as conn:
                    rows: list[dict[str, Any]] = []
                    for room_id, expected_seq, events in todo:
                        params = {"room": room_id, "expected": expected_seq, "new_seq": events[-1]["seq"]}
                        moved = conn.execute(_MOVE_SEQ, params).rowcount
                        if moved != 1:
                            raise SeqConflict(room_id)
                        rows.extend(_event_row(room_id, e) for e in events)
                    conn.execute(_INSERT_EVENTS, rows)
                return conflicts
            except SeqConflict as conflict:
                conflicts.add(conflict.args[0])


def _event_row(room_id: str, event: dict[str, Any]) -> dict[str, Any]:
    return {
        "room_id": room_id,
        "seq": event["seq"],
        "user_id": event["user"],
        "op_id": event["op_id"],
        "kind": event["kind"],
        "data": orjson.dumps(event["data"]).decode(),
        "ts_ms": event["ts"],
    }
