"""Group commit of the room logs: the appends of every room of this instance, written together.

Whatever accumulated while the previous transaction committed goes in one transaction, so the cost of
a commit is shared by all the ops that arrived meanwhile instead of being paid per room per batch.

Where the commit runs:
- embedded SQLite without an fsync per commit (store_sqlite.py says why): in a loop callback
  scheduled when the first append of a batch arrives, so ops decided while the loop read its sockets
  are committed, and their callbacks run, as soon as those reads are done; no task wake-up;
- SQLite that must wait for a lock held elsewhere, or SQLAlchemy: in the database's writer thread;
- PostgreSQL: statements awaited on the loop (store_pg.py).
A task takes over whenever a batch has to be awaited, and keeps the writer until it is idle again, so
one room's appends are always written in the order they were made.

Callers either await `append` or pass a callback to `append_soon`, which is called synchronously once
the transaction is over; after a batch's callbacks, `after_commit` runs (the hubs write the frames they
queued to the sockets there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from server.core.db import Database
from server.rooms.store import RoomLog, SeqConflict
from server.rooms.store_pg import AsyncPgAppender, Redecide, postgres_dsn
from server.rooms.store_sqlite import INLINE_SYNCHRONOUS, InlineSqliteAppender, checkpoint, sqlite_path

log = logging.getLogger("trinity.rooms")
CHECKPOINT_INTERVAL_S = 1.0
Done = Callable[[BaseException | None], None]


class PendingAppend:
    """One room's events waiting for the next transaction. Until `taken`, the room may add events to
    `events` (ops decided meanwhile join the same commit)."""

    __slots__ = ("decide", "done", "events", "expected_seq", "room_id", "taken")

    def __init__(
        self, room_id: str, expected_seq: int, events: list[dict[str, Any]], done: Done, decide: Redecide | None
    ) -> None:
        self.room_id = room_id
        self.expected_seq = expected_seq
        self.events = events
        self.done = done
        self.decide = decide
        self.taken = False


class GroupCommitWriter:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.log = RoomLog(db.engine)
        self.after_commit: Callable[[], None] = lambda: None
        self._pending: list[PendingAppend] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._task_busy = False  # the task is writing: it also writes what arrives until it is idle
        self._scheduled = False  # an inline commit is scheduled on the loop
        self._sqlite_path = sqlite_path(db.url)
        self._inline = (
            InlineSqliteAppender(self._sqlite_path, db.sqlite_synchronous)
            if self._sqlite_path and db.sqlite_synchronous.upper() in INLINE_SYNCHRONOUS
            else None
        )
        self._checkpointing: asyncio.Task[None] | None = None
        self._checkpoint_due = 0.0
        dsn = postgres_dsn(db.url)
        self._pg = AsyncPgAppender(dsn) if dsn else None

    @property
    def locks_rooms(self) -> bool:
        """`append_locked` is available (PostgreSQL)."""
        return self._pg is not None

    async def append(self, room_id: str, expected_seq: int, events: list[dict[str, Any]]) -> None:
        """Store `events` (seq expected_seq+1 ...), or SeqConflict if another writer stored first."""
        await self._wait(room_id, expected_seq, events, None)

    async def append_locked(self, room_id: str, known_seq: int, decide: Redecide) -> None:
        """Under the room's row lock: `decide(events stored after known_seq)` returns the events to
        store after them (PostgreSQL only)."""
        await self._wait(room_id, known_seq, [], decide)

    async def _wait(
        self, room_id: str, expected_seq: int, events: list[dict[str, Any]], decide: Redecide | None
    ) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def done(exc: BaseException | None) -> None:
            if not future.done():
                future.set_result(None) if exc is None else future.set_exception(exc)

        self.append_soon(room_id, expected_seq, events, done, decide)
        await future

    def append_soon(
        self,
        room_id: str,
        expected_seq: int,
        events: list[dict[str, Any]],
        done: Done,
        decide: Redecide | None = None,
    ) -> PendingAppend:
        """Queue an append; `done(None)` once stored, `done(SeqConflict or another error)` if not."""
        entry = PendingAppend(room_id, expected_seq, events, done, decide)
        self._pending.append(entry)
        if self._inline is not None and not self._task_busy:
            if not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._commit_inline)
        else:
            self._wake_task()
        return entry

    def _wake_task(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="room-log-writer")
        self._wake.set()

    def _take(self) -> list[PendingAppend]:
        batch, self._pending = self._pending, []
        for entry in batch:
            entry.taken = True
        return batch

    def _commit_inline(self) -> None:
        self._scheduled = False
        if self._task_busy or not self._pending or self._inline is None:
            return  # the task writes it
        batch = self._take()
        try:
            conflicts = self._inline.try_append_many(_appends(batch))
        except Exception as exc:
            self._finish(batch, None, exc)
            return
        if conflicts is None:  # SQLite's write lock is held elsewhere: the task waits for it
            self._pending[:0] = batch
            self._wake_task()
            return
        self._maybe_checkpoint()
        self._finish(batch, conflicts, None)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._task_busy = True
            try:
                while self._pending:
                    batch = self._take()
                    try:
                        conflicts = await self._write(batch)
                    except Exception as exc:
                        self._finish(batch, None, exc)
                    else:
                        self._finish(batch, conflicts, None)
            finally:
                self._task_busy = False

    async def _write(self, batch: list[PendingAppend]) -> set[str]:
        appends = _appends(batch)
        if self._pg is not None:
            return await self._pg.append_many(appends, {e.room_id: e.decide for e in batch if e.decide})
        conflicts = self._inline.try_append_many(appends) if self._inline else None
        if conflicts is None:  # no fast path, or SQLite's write lock is taken: wait in the thread
            conflicts = await self.db.run_write(self.log.append_many, appends)
        self._maybe_checkpoint()
        return conflicts

    def _finish(self, batch: list[PendingAppend], conflicts: set[str] | None, error: BaseException | None) -> None:
        for entry in batch:
            if error is not None:
                outcome: BaseException | None = error
            else:
                outcome = SeqConflict(entry.room_id) if conflicts and entry.room_id in conflicts else None
            try:
                entry.done(outcome)
            except Exception:
                log.exception("room log callback failed", extra={"room_id": entry.room_id})
        try:
            self.after_commit()
        except Exception:
            log.exception("after-commit hook failed")

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
        if self._pending and not self._task_busy:
            self._commit_inline()  # decided before the hubs closed: store it rather than drop it
        if self._checkpointing is not None:
            with contextlib.suppress(Exception):
                await self._checkpointing
        if self._inline is not None:
            self._inline.close()
        if self._pg is not None:
            await self._pg.close()
        if self._task is not None:
            self._task.cancel()


def _appends(batch: list[PendingAppend]) -> list[tuple[str, int, list[dict[str, Any]]]]:
    return [(e.room_id, e.expected_seq, e.events) for e in batch]
