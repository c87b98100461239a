"""The room event log in SQL: append with an optimistic sequence check, read back in order.

`rooms.last_seq` is the serialization point: an append moves it from the sequence the writer saw to
the new one in the same transaction as the event rows, so two writers (two instances) can never give
out the same sequence number; the loser gets SeqConflict, catches up and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Engine

from server.core.db import Database
from server.rooms.models import Room, RoomEvent
from server.rooms.store_pg import AsyncPgAppender, Redecide, postgres_dsn
from server.rooms.store_sqlite import INLINE_SYNCHRONOUS, InlineSqliteAppender, checkpoint, sqlite_path

log = logging.getLogger("trinity.rooms")
CHECKPOINT_INTERVAL_S = 1.0
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


class GroupCommitWriter:
    """Collects appends from every room of this instance and writes whatever has accumulated in one
    transaction while the previous one commits: the cost of a commit (an fsync) is shared by all the
    ops that arrived meanwhile, instead of being paid once per room per batch."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.log = RoomLog(db.engine)
        self._pending: list[tuple[str, int, list[dict[str, Any]], asyncio.Future[None]]] = []
        self._redecide: dict[str, Redecide | None] = {}  # per room: one flush of a room at a time
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Embedded SQLite without an fsync per commit: commit on the loop (store_sqlite.py says why).
        self._sqlite_path = sqlite_path(db.url)
        self._inline = (
            InlineSqliteAppender(self._sqlite_path, db.sqlite_synchronous)
            if self._sqlite_path and db.sqlite_synchronous.upper() in INLINE_SYNCHRONOUS
            else None
        )
        self._checkpointing: asyncio.Task[None] | None = None
        self._checkpoint_due = 0.0
        # PostgreSQL: statements awaited on the loop, no writer thread (store_pg.py says why).
        dsn = postgres_dsn(db.url)
        self._pg = AsyncPgAppender(dsn) if dsn else None

    @property
    def locks_rooms(self) -> bool:
        """`append_locked` is available (PostgreSQL)."""
        return self._pg is not None

    async def append(self, room_id: str, expected_seq: int, events: list[dict[str, Any]]) -> None:
        """Store `events` (seq expected_seq+1 ...), or SeqConflict if another writer stored first."""
        await self._enqueue(room_id, expected_seq, events, None)

    async def append_locked(self, room_id: str, known_seq: int, decide: Redecide) -> None:
        """Under the room's row lock: `decide(events stored after known_seq)` returns the events to
        store after them (PostgreSQL only)."""
        await self._enqueue(room_id, known_seq, [], decide)

    async def _enqueue(
        self, room_id: str, expected_seq: int, events: list[dict[str, Any]], decide: Redecide | None
    ) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="room-log-writer")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._redecide[room_id] = decide
        self._pending.append((room_id, expected_seq, events, future))
        self._wake.set()
        await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            appends = [(r, s, e) for r, s, e, _ in batch]
            try:
                conflicts: set[str] | None
                redecide = {room: self._redecide.pop(room, None) for room, _, _ in appends}
                if self._pg is not None:
                    conflicts = await self._pg.append_many(appends, redecide)
                else:
                    conflicts = self._inline.try_append_many(appends) if self._inline else None
                if conflicts is None:  # no fast path, or SQLite's write lock is taken: wait in the thread
                    conflicts = await self.db.run_write(self.log.append_many, appends)
                self._maybe_checkpoint()
            except Exception as exc:
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for room_id, _, _, future in batch:
                if future.done():
                    continue
                if room_id in conflicts:
                    future.set_exception(SeqConflict(room_id))
                else:
                    future.set_result(None)

    def _maybe_checkpoint(self) -> None:
        """At most once a second, fold the WAL the inline commits grew into the database, off the loop."""
        if self._inline is None or self._inline.commits_since_checkpoint == 0 or self._sqlite_path is None:
            return
        now = time.monotonic()
        if now < self._checkpoint_due or (self._checkpointing and not self._checkpointing.done()):
            return
        self._checkpoint_due = now + CHECKPOINT_INTERVAL_S
        self._inline.commits_since_checkpoint = 0
        self._checkpointing = asyncio.create_task(self._checkpoint(self._sqlite_path))

    async def _checkpoint(self, path: str) -> None:
        try:
            await self.db.run_write(checkpoint, path)
        except Exception:
            log.warning("WAL checkpoint failed; retried later", exc_info=True)

    async def close(self) -> None:
        if self._checkpointing is not None:
            with contextlib.suppress(Exception):
                await self._checkpointing
        if self._inline is not None:
            self._inline.close()
        if self._pg is not None:
            await self._pg.close()
        if self._task is not None:
            self._task.cancel()
