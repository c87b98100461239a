"""The room log's appends on PostgreSQL, awaited on the event loop (psycopg's asyncio connection).

The SQLAlchemy path runs each commit in a writer thread; under load that thread waits for the GIL
while the loop fans frames out (up to the 5 ms switch interval, several times per transaction), which
dominated the latency of a persisted op. Here the statements go out on the loop and the loop stays
free while PostgreSQL works: no thread, no GIL handoff. One connection of its own, reconnected after
a failure; the same optimistic rule as `RoomLog.append_many` (rooms/store.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
import psycopg

from server.rooms.store_sqlite import event_values

log = logging.getLogger("trinity.rooms")
Batch = tuple[str, int, list[dict[str, Any]]]
Redecide = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
_LOCK_ROOMS = "SELECT id, last_seq FROM rooms WHERE id = ANY(%s) ORDER BY id FOR UPDATE"
_MISSING = (
    "SELECT e.room_id, e.seq, e.kind, e.user_id, e.op_id, e.ts_ms, e.data FROM room_events e"
    " JOIN unnest(%s::text[], %s::bigint[]) AS known(room_id, seq) ON e.room_id = known.room_id AND e.seq > known.seq"
    " ORDER BY e.room_id, e.seq"
)
_MOVE_SEQ = "UPDATE rooms SET last_seq = %s WHERE id = %s AND last_seq = %s"
_INSERT = (
    "INSERT INTO room_events (room_id, seq, user_id, op_id, kind, data, ts_ms) VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
# Several rooms' optimistic appends in one statement, so one round trip: move each room's last_seq
# from the expected value, insert the events of the rooms that moved, return those rooms. A room that
# did not move (another instance appended first) writes nothing and is a conflict. On a loaded loop
# every round trip waits for the loop to come around, so a statement per room cost milliseconds.
_APPEND_ALL = """
WITH moved AS (
  UPDATE rooms SET last_seq = v.last FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) AS v(id, expected, last)
  WHERE rooms.id = v.id AND rooms.last_seq = v.expected RETURNING rooms.id
), stored AS (
  INSERT INTO room_events (room_id, seq, user_id, op_id, kind, data, ts_ms)
  SELECT e.* FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[])
    AS e(room_id, seq, user_id, op_id, kind, data, ts_ms)
  WHERE e.room_id IN (SELECT id FROM moved)
  RETURNING 1
)
SELECT id FROM moved
"""


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

    async def append_many(self, batches: list[Batch], redecide: dict[str, Redecide | None] | None = None) -> set[str]:
        """Persist several rooms' events in one transaction. A room whose expected sequence is stale
        (another instance stored first) is decided again under its row lock when it has a `redecide`:
        the events it missed go in, the events to store come out, and nothing is retried. Without one
        it is returned as a conflict and nothing of it is written (the other rooms are)."""
        redecide = redecide or {}
        if not any(redecide.values()) and len({room for room, _, _ in batches}) == len(batches):
            return await self._append_optimistic(batches)
        conflicts: set[str] = set()
        while True:
            # Rooms in id order: two instances locking the same rooms always lock them in the same order.
            todo = sorted(
                (b for b in batches if b[0] not in conflicts and (b[2] or redecide.get(b[0]))), key=lambda b: b[0]
            )
            if not todo:
                return conflicts
            conn = await self._connection()
            try:
                async with conn.transaction(), conn.cursor() as cursor:
                    missing = await self._lock_rooms(cursor, [(r, s) for r, s, _ in todo if redecide.get(r)])
                    rows: list[tuple[Any, ...]] = []
                    for room_id, _expected_seq, events in todo:
                        again = redecide.get(room_id)
                        if again is not None:
                            events = again(missing.get(room_id, []))
                            if not events:
                                continue
                        await cursor.execute(_MOVE_SEQ, (events[-1]["seq"], room_id, events[0]["seq"] - 1))
                        if cursor.rowcount != 1:
                            conflicts.add(room_id)
                            raise _Conflict
                        rows.extend(event_values(room_id, e) for e in events)
                    if rows:
                        await cursor.executemany(_INSERT, rows)
                return conflicts
            except _Conflict:
                continue  # rolled back by the transaction block; again without the stale room
            except psycopg.OperationalError:
                await self.close()  # a broken connection: the next append opens a new one
                raise

    async def _append_optimistic(self, batches: list[Batch]) -> set[str]:
        todo = [(room, expected, events) for room, expected, events in batches if events]
        if not todo:
            return set()
        rows = [event_values(room, event) for room, _, events in todo for event in events]
        columns = [list(column) for column in zip(*rows, strict=True)]
        rooms = ([r for r, _, _ in todo], [s for _, s, _ in todo], [e[-1]["seq"] for _, _, e in todo])
        conn = await self._connection()
        try:
            cursor = await conn.execute(_APPEND_ALL, (*rooms, *columns))
            moved = {room for (room,) in await cursor.fetchall()}
        except psycopg.OperationalError:
            await self.close()
            raise
        return {room for room, _, _ in todo if room not in moved}

    @staticmethod
    async def _lock_rooms(
        cursor: psycopg.AsyncCursor[Any], known: list[tuple[str, int]]
    ) -> dict[str, list[dict[str, Any]]]:
        """Lock the rooms' rows (one statement, in id order) and read what other instances stored past
        each room's known sequence (one more, only if some did); the rows stay locked until commit."""
        if not known:
            return {}
        await cursor.execute(_LOCK_ROOMS, ([room for room, _ in known],))
        heads = dict(await cursor.fetchall())
        behind = [(room, seq) for room, seq in known if heads.get(room, seq) != seq]
        missing: dict[str, list[dict[str, Any]]] = {}
        if behind:
            await cursor.execute(_MISSING, ([room for room, _ in behind], [seq for _, seq in behind]))
            for room, seq, kind, user, op_id, ts, data in await cursor.fetchall():
                event = {"seq": seq, "kind": kind, "user": user, "op_id": op_id, "ts": ts, "data": orjson.loads(data)}
                missing.setdefault(room, []).append(event)
        return missing

    async def close(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close()
            except psycopg.Error:
                log.debug("closing the room log connection failed", exc_info=True)
            self._conn = None
