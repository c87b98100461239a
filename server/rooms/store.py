"""The room event log in SQL: append with an optimistic sequence check, read back in order.

`rooms.last_seq` is the serialization point: an append moves it from the sequence the writer saw to
the new one in the same transaction as the event rows, so two writers (two instances) can never give
out the same sequence number; the loser gets SeqConflict, catches up and retries.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from server.rooms.models import Room, RoomEvent

events_table = RoomEvent.__table__  # type: ignore[attr-defined]
rooms_table = Room.__table__  # type: ignore[attr-defined]


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
        if not events:
            return
        last = events[-1]["seq"]
        with self.engine.begin() as conn:
            moved = conn.execute(
                update(rooms_table)
                .where(rooms_table.c.id == room_id, rooms_table.c.last_seq == expected_seq)
                .values(last_seq=last)
            ).rowcount
            if moved != 1:
                raise SeqConflict(room_id)
            conn.execute(
                insert(events_table),
                [
                    {
                        "room_id": room_id,
                        "seq": e["seq"],
                        "user_id": e["user"],
                        "op_id": e["op_id"],
                        "kind": e["kind"],
                        "data": orjson.dumps(e["data"]).decode(),
                        "ts_ms": e["ts"],
                    }
                    for e in events
                ],
            )
