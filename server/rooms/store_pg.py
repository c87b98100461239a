"""The room log's appends on PostgreSQL, awaited on the event loop (psycopg's asyncio connection).

The SQLAlchemy path runs each commit in a writer thread; under load that thread waits for the GIL
while the loop fans frames out (up to the 5 ms switch interval, several times per transaction), which
dominated the latency of a persisted op. Here the statements go out on the loop and the loop stays
free while PostgreSQL works: no thread, no GIL handoff. One connection of its own, reconnected after
a failure; the same optimistic rule as `RoomLog.append_many` (rooms/store.py).
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from server.rooms.store_sqlite import event_values

log = logging.getLogger("trinity.rooms")
Batch = tuple[str, int, list[dict[str, Any]]]
_MOVE_SEQ = "UPDATE rooms SET last_seq = %s WHERE id = %s AND last_seq = %s"
_INSERT = (
    "INSERT INTO room_events (room_id, seq, user_id, op_id, kind, data, ts_ms) VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


def postgres_dsn(url: str) -> str | None:
    """A libpq URL for a SQLAlchemy PostgreSQL URL, None for other databases."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return None


class _Conflict(Exception):
    pass


class AsyncPgAppender:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, application_name="trinity-room-log"
            )
        return self._conn

    async def append_many(self, batches: list[Batch]) -> set[str]:
        """Persist several rooms' events in one transaction; the rooms whose expected sequence was
        stale are returned and nothing of theirs is written (the others are)."""
        conflicts: set[str] = set()
        while True:
            # Rooms in id order: two instances locking the same rooms always lock them in the same order.
            todo = sorted((b for b in batches if b[0] not in conflicts and b[2]), key=lambda b: b[0])
            if not todo:
                return conflicts
            conn = await self._connection()
            try:
                async with conn.transaction(), conn.cursor() as cursor:
                    rows: list[tuple[Any, ...]] = []
                    for room_id, expected_seq, events in todo:
                        await cursor.execute(_MOVE_SEQ, (events[-1]["seq"], room_id, expected_seq))
                        if cursor.rowcount != 1:
                            conflicts.add(room_id)
                            raise _Conflict
                        rows.extend(event_values(room_id, e) for e in events)
                    await cursor.executemany(_INSERT, rows)
                return conflicts
            except _Conflict:
                continue  # rolled back by the transaction block; again without the stale room
            except psycopg.OperationalError:
                await self.close()  # a broken connection: the next append opens a new one
                raise

    async def close(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close()
            except psycopg.Error:
                log.debug("closing the room log connection failed", exc_info=True)
            self._conn = None
