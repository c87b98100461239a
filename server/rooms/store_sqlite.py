"""The room log's embedded fast path: appends committed on the event loop itself, on SQLite.

Handing a commit to the writer thread costs more than the commit: the thread waits for the GIL while
the loop fans frames out (up to the 5 ms switch interval, several times per transaction), where a
commit that does not wait for the disk (WAL, synchronous=NORMAL) takes about 0.1 ms. So when SQLite
is not asked to fsync every commit, appends run here, on a connection of their own that never waits
for a lock: if another connection (a REST request) holds SQLite's write lock, `try_append_many`
answers None at once and the caller uses the thread path, which waits. Checkpoints (the fsyncs of
WAL mode) are left to a background thread, so the loop never pays for them either.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

Batch = tuple[str, int, list[dict[str, Any]]]
_MOVE_SEQ = "UPDATE rooms SET last_seq = ? WHERE id = ? AND last_seq = ?"
_INSERT = "INSERT INTO room_events (room_id, seq, user_id, op_id, kind, data, ts_ms) VALUES (?, ?, ?, ?, ?, ?, ?)"
INLINE_SYNCHRONOUS = ("OFF", "NORMAL")  # FULL/EXTRA fsync each commit: too slow for the loop


def event_values(room_id: str, event: dict[str, Any]) -> tuple[Any, ...]:
    """A room_events row in the column order of the INSERTs here and in store_pg.py."""
    data = orjson.dumps(event["data"]).decode()
    return (room_id, event["seq"], event["user"], event["op_id"], event["kind"], data, event["ts"])


def sqlite_path(url: str) -> str | None:
    """The file of a sqlite:/// URL, None for other databases and in-memory ones."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1]
    return path if path and path != ":memory:" else None


class _Conflict(Exception):
    pass


class InlineSqliteAppender:
    def __init__(self, path: str, synchronous: str) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in (
            "journal_mode=WAL",
            f"synchronous={synchronous}",
            "foreign_keys=ON",
            "busy_timeout=0",  # never wait on the loop; the thread path waits instead
            "wal_autocheckpoint=0",  # checkpoints run in the writer thread (`checkpoint`)
        ):
            self._conn.execute(f"PRAGMA {pragma}")
        self.commits_since_checkpoint = 0

    def try_append_many(self, batches: list[Batch]) -> set[str] | None:
        """Like `RoomLog.append_many` (the rooms whose expected sequence was stale), or None when
        SQLite's write lock is taken and nothing was written."""
        conflicts: set[str] = set()
        while True:
            todo = sorted((b for b in batches if b[0] not in conflicts and b[2]), key=lambda b: b[0])
            if not todo:
                return conflicts
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if _busy(exc):
                    return None
                raise
            try:
                rows: list[tuple[Any, ...]] = []
                for room_id, expected_seq, events in todo:
                    moved = self._conn.execute(_MOVE_SEQ, (events[-1]["seq"], room_id, expected_seq)).rowcount
                    if moved != 1:
                        conflicts.add(room_id)
                        raise _Conflict
                    rows.extend(event_values(room_id, e) for e in events)
                self._conn.executemany(_INSERT, rows)
                self._conn.execute("COMMIT")
                self.commits_since_checkpoint += 1
                return conflicts
            except _Conflict:
                self._conn.execute("ROLLBACK")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self._conn.close()


def checkpoint(path: str) -> None:
    """Copy the WAL into the database file (PASSIVE: never blocks readers or writers). Runs in a
    thread, on a connection of its own."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        conn.close()


def _busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)
