"""The room event log on SQLite and PostgreSQL: optimistic appends, group commits, ordered reads."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from server.core.db import Database
from server.rooms.store import GroupCommitWriter, RoomLog, SeqConflict
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
