"""One instance leads a room and decides its ops; the others forward theirs (rooms/forwarding.py).

Two instances in this process, each with its own hubs, database engine and Redis bus, on one
PostgreSQL database and the real Redis, as two app processes would be.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import redis.asyncio as aioredis

from server.core.bus_redis import RedisBus, leader_key
from server.core.db import Database
from server.core.metrics import Metrics
from server.rooms.connection import Connection
from server.rooms.hub import RoomHub
from server.rooms.hubs import Hubs
from server.settings import Settings
from tests.support.services import REDIS_URL, require_redis
from tests.support.world import World, create_room


class Instance:
    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.db = Database(settings)
        self.bus = RedisBus(REDIS_URL, name)
        self.metrics = Metrics()
        self.hubs = Hubs(db=self.db, bus=self.bus, settings=settings, metrics=self.metrics)

    async def close(self) -> None:
        await self.hubs.close()
        await self.bus.close()
        self.db.close()


class Client:
    """A connection as the hub sees it, recording every frame it is sent."""

    def __init__(self, hub: RoomHub, world: World, name: str) -> None:
        person = world[name]
        self.hub = hub
        self.frames: list[dict[str, Any]] = []
        self.conn = Connection(
            self._send,
            self._close,
            user_id=person.id,
            display_name=name,
            site_id="site-a",
            role="participant",
            queue_max=10_000,
        )
        self._sender = asyncio.create_task(self.conn.run_sender())

    async def _send(self, text: str) -> None:
        self.frames.append(orjson.loads(text))

    async def _close(self, code: int, reason: str) -> None:
        return None

    def op(self, op_id: str, kind: str, payload: dict[str, Any]) -> None:
        self.hub.submit(self.conn, op_id, kind, payload)

    async def reply(self, op_id: str, timeout: float = 10.0) -> dict[str, Any]:
        async def wait() -> dict[str, Any]:
            while True:
                for frame in self.frames:
                    if frame.get("op_id") == op_id and frame["type"] in ("ack", "error"):
                        return frame
                await asyncio.sleep(0.01)

        return await asyncio.wait_for(wait(), timeout)

    def events(self) -> list[tuple[int, str, Any]]:
        return [(f["seq"], f["kind"], f["op_id"]) for f in self.frames if f["type"] == "event"]

    def close(self) -> None:
        self.conn.drop(1000, "done")
        self._sender.cancel()


@asynccontextmanager
async def instances(world: World, **overrides: Any) -> AsyncIterator[tuple[Instance, Instance]]:
    require_redis()
    settings = world.settings.model_copy(update={"redis_url": REDIS_URL, **overrides})
    pair = (Instance("instance-a", settings), Instance("instance-b", settings))
    for instance in pair:
        await instance.bus.start()
    try:
        yield pair
    finally:
        for instance in pair:
            await instance.close()


async def joined(hub: RoomHub, world: World, name: str) -> Client:
    client = Client(hub, world, name)
    assert await hub.join(client.conn, None)
    return client


def marker(i: int) -> dict[str, Any]:
    return {"id": f"m{i}", "kind": "marker", "data": {"point": [i, 0, 0]}}


async def test_ops_on_a_follower_are_decided_by_the_leader(world_pg: World) -> None:
    world = world_pg
    room = create_room(world, members={"engineer": "participant"})
    async with instances(world) as (a, b):
        hub_a = await a.hubs.get(room)  # loads first: takes the lease
        hub_b = await b.hubs.get(room)
        assert hub_a.leadership.leader == hub_b.leadership.leader == "instance-a"
        here, there = await joined(hub_a, world, "surgeon"), await joined(hub_b, world, "engineer")
        for i in range(20):
            here.op(f"a{i}", "annotation.create", marker(i))
            there.op(f"b{i}", "annotation.create", marker(100 + i))
        acks = [await there.reply(f"b{i}") for i in range(20)] + [await here.reply(f"a{i}") for i in range(20)]
        assert all(ack["type"] == "ack" for ack in acks) and sorted(a["seq"] for a in acks) == list(range(1, 41))
        assert a.metrics.ops_forwarded._value.get() == 0 and b.metrics.ops_forwarded._value.get() == 20
        # Nobody raced for the room's row: the follower never wrote.
        assert a.metrics.seq_conflicts._value.get() == 0 and b.metrics.seq_conflicts._value.get() == 0
        await asyncio.sleep(0.2)
        assert here.events() == there.events() and [seq for seq, _, _ in here.events()] == list(range(1, 41))
        assert hub_a.state.snapshot() == hub_b.state.snapshot()

        # A retry of a stored op is acknowledged again, as a duplicate, with its sequence.
        there.frames.clear()
        there.op("b3", "annotation.create", marker(103))
        duplicate = await there.reply("b3")
        stored = next(seq for seq, _, op_id in here.events() if op_id == "b3")
        assert duplicate == {"type": "ack", "op_id": "b3", "seq": stored, "duplicate": True}
        # Leadership is per room: the instance that loads a room first leads it.
        other = create_room(world, members={"engineer": "participant"})
        other_b = await b.hubs.get(other)
        other_a = await a.hubs.get(other)
        assert other_a.leadership.leader == other_b.leadership.leader == "instance-b"
        for client in (here, there):
            client.close()


async def test_a_rejected_forwarded_op_gets_the_leaders_typed_error(world_pg: World) -> None:
    world = world_pg
    room = create_room(world, members={"engineer": "participant"})
    async with instances(world) as (a, b):
        hub_a = await a.hubs.get(room)
        hub_b = await b.hubs.get(room)
        assert hub_b.leadership.leader == "instance-a"
        there = await joined(hub_b, world, "engineer")
        there.op("nothing", "undo", {})
        error = await there.reply("nothing")
        assert error["type"] == "error" and error["code"] == "nothing_to_undo" and error["op_id"] == "nothing"
        there.op("m", "annotation.create", marker(1))
        assert (await there.reply("m"))["seq"] == 1
        there.op("stale", "annotation.update", {"id": "m1", "base_version": 0, "label": "late"})
        stale = await there.reply("stale")
        assert (
            stale["type"] == "error"
            and stale["code"] == "stale_version"
            and stale["details"]["current"]["version"] == 1
        )
        assert b.metrics.ops_forwarded._value.get() == 3 and hub_a.state.seq == hub_b.state.seq == 1
        there.close()


async def test_ops_waiting_on_a_dead_leader_are_decided_once_its_lease_expires(world_pg: World) -> None:
    world = world_pg
    room = create_room(world, members={"engineer": "participant"})
    async with instances(world, room_lease_s=1.0) as (_, b):
        # A leader that died without releasing: its lease still runs, nobody answers for it.
        redis = aioredis.from_url(REDIS_URL)
        await redis.set(leader_key(room), "instance-dead", px=1500)
        await redis.aclose()
        hub = await b.hubs.get(room)
        assert hub.leadership.leader == "instance-dead"
        client = await joined(hub, world, "engineer")
        client.op("waits", "annotation.create", marker(1))
        await asyncio.sleep(0.3)
        assert not [f for f in client.frames if f.get("op_id") == "waits"]  # sent to the dead leader
        ack = await client.reply("waits", timeout=10)
        assert ack == {"type": "ack", "op_id": "waits", "seq": 1}
        assert hub.leadership.leader == "instance-b" and client.events() == [(1, "annotation.created", "waits")]
        client.close()


async def test_the_lease_passes_on_when_the_leader_unloads_the_room(world_pg: World) -> None:
    world = world_pg
    room = create_room(world, members={"engineer": "participant"})
    async with instances(world, room_lease_s=30.0) as (a, b):
        await a.hubs.get(room)
        hub_b = await b.hubs.get(room)
        assert hub_b.leadership.leader == "instance-a"
        await a.hubs.evict(room, "test")  # releases the lease and says so on the room's stream
        client = await joined(hub_b, world, "engineer")
        for _ in range(200):  # a 30 s lease: only the release notice can hand it over this soon
            if hub_b.leadership.leader == "instance-b":
                break
            await asyncio.sleep(0.02)
        assert hub_b.leadership.leader == "instance-b"
        client.op("after", "annotation.create", marker(1))
        assert (await client.reply("after"))["seq"] == 1
        assert b.metrics.ops_forwarded._value.get() == 0
        client.close()
