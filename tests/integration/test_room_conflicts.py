"""An op decided at once (rooms/commit.py) whose commit loses to another writer of the same room is
decided again on what is stored, never stored twice or under a taken sequence number.

Two app instances share one SQLite file without a shared bus, so neither knows what the other
stores until its append is refused: the case every leader handover can produce."""

from __future__ import annotations

import asyncio

from server.rooms.client import RoomClient
from tests.support.world import LiveServer, World, create_room


def metric(text: str, name: str) -> float:
    lines = [line for line in text.splitlines() if line.startswith(name + " ") or line.startswith(name + "{")]
    return sum(float(line.split()[-1]) for line in lines)


async def test_a_stale_inline_commit_is_decided_again_after_the_other_writer(world_sqlite: World) -> None:
    world = world_sqlite
    room = create_room(world, members={"engineer": "participant"})
    async with LiveServer(world.settings) as one, LiveServer(world.settings) as two:
        async with (
            RoomClient(one.base_url, room, world["surgeon"].token) as a,
            RoomClient(two.base_url, room, world["engineer"].token) as b,
        ):
            # Both instances have the room loaded at seq 0; `two` stores seq 1 behind `one`'s back.
            assert await b.send_op("chat.send", {"text": "from two"}) == 1
            # `one` decides this op at once as seq 1; its commit is refused; it reloads and stores seq 2.
            assert await a.send_op("chat.send", {"text": "from one"}) == 2
            await a.wait_seq(2)
            assert [m["text"] for m in a.state.chat] == ["from two", "from one"]
            # Many more, concurrently from both sides: every op stored once, dense sequence numbers.
            futures = [a.submit_op("chat.send", {"text": f"a{i}"}) for i in range(30)]
            futures += [b.submit_op("chat.send", {"text": f"b{i}"}) for i in range(30)]
            seqs = await asyncio.wait_for(asyncio.gather(*futures), 30)
            assert sorted(seqs) == list(range(3, 63))
        async with one.http(world["surgeon"]) as http:
            events = (await http.get(f"/api/rooms/{room}/events", params={"limit": 1000})).json()
            conflicts = metric((await http.get("/metrics")).text, "trinity_room_seq_conflicts_total")
    assert [e["seq"] for e in events] == list(range(1, 63))
    texts = [e["data"]["text"] for e in events]
    assert len(set(texts)) == 62 and texts[:2] == ["from two", "from one"]
    assert conflicts >= 1
