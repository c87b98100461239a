"""The room event log on SQLite and PostgreSQL: optimistic appends, group commits, ordered reads."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from server.core.db import Database
from server.rooms.group_commit import GroupCommitWriter
from server.rooms.store import RoomLog, SeqConflict
from tests.support.world import World, create_room


def event(seq: int, text: str, op_id: str | None = None, user: str = "u1") -> dict:
    return {
        "seq": seq,
        "kind": "chat.message",
        "user": user,
        "op_id": op_id,
        "ts": 1_795_000_000_000 + seq,
        "data": {"text": text},
    }


def test_appends_are_ordered_and_a_stale_writer_is_refused(world: World) -> None:
    room = create_room(world)
    db = Database(world.settings)
    log = RoomLog(db.engine)
    log.append(room, 0, [event(1, "a", "op1"), event(2, "b", "op2")])
    with pytest.raises(SeqConflict):
        log.append(room, 0, [event(1, "from another instance")])  # it had not seen seq 1-2
    log.append(room, 2, [event(3, "c")])
    assert [(e["seq"], e["data"]["text"]) for e in log.events_after(room, 0)] == [(1, "a"), (2, "b"), (3, "c")]
    assert [e["seq"] for e in log.events_after(room, 1, limit=1)] == [2]
    epoch, last, archived = log.head(room)
    assert last == 3 and not archived and epoch
    with pytest.raises(IntegrityError):
        log.append(room, 3, [event(4, "retry", "op1")])  # the same op id twice is refused by the database too
    assert log.head(room)[1] == 3
    db.close()


def test_one_commit_for_many_rooms_skips_only_the_stale_one(world: World) -> None:
    rooms = [create_room(world) for _ in range(3)]
    db = Database(world.settings)
    log = RoomLog(db.engine)
    log.append(rooms[1], 0, [event(1, "already there")])
    conflicts = log.append_many(
        [
            (rooms[0], 0, [event(1, "r0")]),
            (rooms[1], 0, [event(1, "stale")]),
            (rooms[2], 0, [event(1, "r2"), event(2, "r2b")]),
        ]
    )
    assert conflicts == {rooms[1]}
    assert [e["data"]["text"] for e in log.events_after(rooms[0], 0)] == ["r0"]
    assert [e["data"]["text"] for e in log.events_after(rooms[1], 0)] == ["already there"]
    assert [e["data"]["text"] for e in log.events_after(rooms[2], 0)] == ["r2", "r2b"]
    db.close()


async def test_group_commit_writer_batches_concurrent_rooms(world: World) -> None:
    import asyncio

    rooms = [create_room(world) for _ in range(5)]
    db = Database(world.settings)
    writer = GroupCommitWriter(db)

    async def write(room: str) -> None:
        for seq in range(1, 21):
            await writer.append(room, seq - 1, [event(seq, f"{room}:{seq}")])

    await asyncio.gather(*(write(r) for r in rooms))
    with pytest.raises(SeqConflict):
        await writer.append(rooms[0], 5, [event(6, "stale")])
    log = RoomLog(db.engine)
    for room in rooms:
        assert [e["seq"] for e in log.events_after(room, 0)] == list(range(1, 21))
    await writer.close()
    db.close()


def test_inline_sqlite_appends_match_the_log_and_step_aside_when_the_lock_is_taken(world_sqlite: World) -> None:
    """The embedded fast path writes the same rows with the same conflict rule, and never waits: while
    another connection holds SQLite's write lock it writes nothing and says so."""
    import sqlite3

    from server.rooms.store_sqlite import InlineSqliteAppender, sqlite_path

    rooms = [create_room(world_sqlite) for _ in range(2)]
    db = Database(world_sqlite.settings)
    path = sqlite_path(db.url)
    assert path is not None
    inline = InlineSqliteAppender(path, "NORMAL")
    log = RoomLog(db.engine)
    assert inline.try_append_many([(rooms[0], 0, [event(1, "a", "op1"), event(2, "b")])]) == set()
    assert inline.try_append_many([(rooms[0], 0, [event(1, "stale")]), (rooms[1], 0, [event(1, "c")])]) == {rooms[0]}
    assert [e["data"]["text"] for e in log.events_after(rooms[0], 0)] == ["a", "b"]
    assert [e["data"]["text"] for e in log.events_after(rooms[1], 0)] == ["c"]
    assert log.head(rooms[0])[1] == 2
    with pytest.raises(sqlite3.IntegrityError):
        inline.try_append_many([(rooms[0], 2, [event(3, "retry", "op1")])])  # same op id: refused, rolled back
    assert log.head(rooms[0])[1] == 2

    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # e.g. a REST request mid-transaction
    assert inline.try_append_many([(rooms[0], 2, [event(3, "d")])]) is None
    other.execute("ROLLBACK")
    other.close()
    assert log.head(rooms[0])[1] == 2 and [e["seq"] for e in log.events_after(rooms[0], 2)] == []
    inline.close()
    db.close()


async def test_group_commit_writer_waits_in_its_thread_while_another_connection_writes(world_sqlite: World) -> None:
    import asyncio
    import sqlite3

    from server.rooms.store_sqlite import sqlite_path

    room = create_room(world_sqlite)
    db = Database(world_sqlite.settings)
    assert db.sqlite_synchronous == "NORMAL"  # the default takes the inline path
    writer = GroupCommitWriter(db)
    path = sqlite_path(db.url)
    assert path is not None
    await writer.append(room, 0, [event(1, "inline")])
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    pending = asyncio.create_task(writer.append(room, 1, [event(2, "after the lock")]))
    await asyncio.sleep(0.3)
    assert not pending.done()  # waiting for the lock in the writer thread, not failing
    outcomes: list[BaseException | None] = []
    writer.append_soon(room, 2, [event(3, "queued behind")], outcomes.append)  # must not overtake seq 2
    await asyncio.sleep(0.1)
    assert outcomes == []
    other.execute("ROLLBACK")
    other.close()
    await asyncio.wait_for(pending, 10)
    for _ in range(100):
        if outcomes:
            break
        await asyncio.sleep(0.05)
    assert outcomes == [None]
    texts = [e["data"]["text"] for e in RoomLog(db.engine).events_after(room, 0)]
    assert texts == ["inline", "after the lock", "queued behind"]
    await writer.close()
    db.close()


async def test_appends_made_before_the_commit_runs_join_it_and_callbacks_follow_it(world_sqlite: World) -> None:
    """`append_soon` (the path of ops decided at once): the events list may grow until the writer takes
    it; the callback says stored or why not, and `after_commit` runs once the batch's callbacks have."""
    import asyncio

    from server.rooms.store import SeqConflict

    rooms = [create_room(world_sqlite) for _ in range(2)]
    db = Database(world_sqlite.settings)
    writer = GroupCommitWriter(db)
    seen: list[str] = []
    writer.after_commit = lambda: seen.append("after")
    events = [event(1, "first")]
    entry = writer.append_soon(rooms[0], 0, events, lambda error: seen.append(f"r0:{error!r}"))
    events.append(event(2, "joined before the commit"))
    stale = writer.append_soon(rooms[1], 5, [event(6, "stale")], lambda error: seen.append(type(error).__name__))
    assert not entry.taken and seen == []  # nothing is written until the loop comes around
    await asyncio.sleep(0)
    assert entry.taken and stale.taken
    assert seen == ["r0:None", SeqConflict.__name__, "after"]
    log = RoomLog(db.engine)
    assert [e["data"]["text"] for e in log.events_after(rooms[0], 0)] == ["first", "joined before the commit"]
    assert log.events_after(rooms[1], 0) == [] and log.head(rooms[1])[1] == 0
    await writer.close()
    db.close()


async def test_postgres_appends_survive_a_dropped_connection(world_pg: World) -> None:
    """The writer's own connection is killed by the server (a PostgreSQL restart, a network blip): that
    append fails, nothing half-written stays, and the next one reconnects."""
    from sqlalchemy import text

    room = create_room(world_pg)
    db = Database(world_pg.settings)
    writer = GroupCommitWriter(db)
    await writer.append(room, 0, [event(1, "before")])
    with db.engine.begin() as conn:
        killed = conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = 'trinity-room-log'"
            )
        ).all()
    assert killed, "the writer's connection was not found"
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises for a closed connection
        await writer.append(room, 1, [event(2, "lost with the connection")])
    await writer.append(room, 1, [event(2, "after reconnecting")])
    log = RoomLog(db.engine)
    assert [e["data"]["text"] for e in log.events_after(room, 0)] == ["before", "after reconnecting"]
    await writer.close()
    db.close()


async def test_postgres_decides_a_stale_room_again_under_its_row_lock(world_pg: World) -> None:
    """Another instance stored seq 1-2 first: under the room's row lock the writer hands them to the
    room's decide and stores what it returns after them, in the same transaction; a room without one
    is a plain optimistic conflict."""
    from server.rooms.store_pg import AsyncPgAppender, postgres_dsn

    rooms = [create_room(world_pg) for _ in range(2)]
    db = Database(world_pg.settings)
    log = RoomLog(db.engine)
    for room in rooms:
        log.append(room, 0, [event(1, "other 1"), event(2, "other 2")])
    dsn = postgres_dsn(db.url)
    assert dsn
    appender = AsyncPgAppender(dsn)
    seen: list[list[int]] = []

    def redecide(missing: list[dict]) -> list[dict]:
        seen.append([e["seq"] for e in missing])
        return [event(3, "mine, decided after theirs")]

    conflicts = await appender.append_many(
        [(rooms[0], 0, []), (rooms[1], 0, [event(1, "mine too")])], {rooms[0]: redecide}
    )
    # Called once, or again when the transaction is retried without the conflicting room (id order).
    assert conflicts == {rooms[1]} and seen and all(missing == [1, 2] for missing in seen)
    assert [e["data"]["text"] for e in log.events_after(rooms[0], 0)] == [
        "other 1",
        "other 2",
        "mine, decided after theirs",
    ]
    assert log.head(rooms[0])[1] == 3 and log.head(rooms[1])[1] == 2
    await appender.close()
    db.close()


async def test_postgres_optimistic_appends_of_many_rooms_go_in_one_statement(world_pg: World) -> None:
    """The leader's path: every room of the batch in one statement; a stale room writes nothing and is
    returned as a conflict, the others are stored whole, and a reused op id fails the statement."""
    from server.rooms.store_pg import AsyncPgAppender, postgres_dsn

    rooms = [create_room(world_pg) for _ in range(3)]
    db = Database(world_pg.settings)
    log = RoomLog(db.engine)
    log.append(rooms[1], 0, [event(1, "another instance's")])
    dsn = postgres_dsn(db.url)
    assert dsn
    appender = AsyncPgAppender(dsn)
    batch = [
        (rooms[0], 0, [event(1, "a1", "op-a1"), event(2, "a2")]),
        (rooms[1], 0, [event(1, "stale")]),
        (rooms[2], 0, [event(1, "c1", "op-c1")]),
    ]
    assert await appender.append_many(batch) == {rooms[1]}
    assert [e["data"]["text"] for e in log.events_after(rooms[0], 0)] == ["a1", "a2"]
    assert [e["data"]["text"] for e in log.events_after(rooms[1], 0)] == ["another instance's"]
    assert [(e["seq"], e["op_id"]) for e in log.events_after(rooms[2], 0)] == [(1, "op-c1")]
    assert [log.head(room)[1] for room in rooms] == [2, 1, 1]
    with pytest.raises(Exception, match="ux_room_events_op"):
        await appender.append_many([(rooms[0], 2, [event(3, "again")]), (rooms[2], 1, [event(2, "c", "op-c1")])])
    assert [log.head(room)[1] for room in rooms] == [2, 1, 1]  # the failed statement moved nothing
    assert await appender.append_many([(rooms[0], 2, [event(3, "after the failure")])]) == set()
    assert log.events_after(rooms[0], 2)[0]["data"]["text"] == "after the failure"
    await appender.close()
    db.close()
