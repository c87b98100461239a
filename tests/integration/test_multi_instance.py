"""Several app instances on one PostgreSQL and one Redis: one order for everyone, failover, no loss."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.rooms.client import RoomClient
from tests.support.process import ServerProcess
from tests.support.redis_server import RedisServer
from tests.support.services import REDIS_URL, require_redis
from tests.support.world import World, create_room

pytestmark = pytest.mark.multiprocess


@pytest.fixture
def instances(world_pg: World, tmp_path: Path) -> Iterator[list[ServerProcess]]:
    require_redis()
    env = {
        "TRINITY_DATABASE_URL": world_pg.settings.effective_database_url,
        "TRINITY_REDIS_URL": REDIS_URL,
        "TRINITY_DATA_DIR": str(tmp_path),
    }
    servers = [ServerProcess(env, tmp_path / f"instance-{i}.log") for i in range(2)]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


async def test_clients_on_different_instances_see_one_order(world_pg: World, instances: list[ServerProcess]) -> None:
    world = world_pg
    room = create_room(world, members={"engineer": "participant", "radiologist": "participant"})
    names = ["surgeon", "engineer", "radiologist"]
    clients = [RoomClient(instances[i % 2].base_url, room, world[n].token) for i, n in enumerate(names)]
    for client in clients:
        await client.connect()

    async def write(index: int, client: RoomClient) -> None:
        for i in range(40):
            await client.send_op(
                "annotation.create", {"id": f"{index}-{i}", "kind": "marker", "data": {"point": [i, index, 0]}}
            )

    await asyncio.gather(*(write(i, c) for i, c in enumerate(clients)))
    for client in clients:
        await client.wait_seq(120, timeout=20)
    orders = [[(a["id"], a["version"]) for a in c.state.snapshot()["annotations"]] for c in clients]
    assert orders[0] == orders[1] == orders[2] and len(orders[0]) == 120
    seqs = [sorted(a["id"] for a in c.state.annotations.values()) for c in clients]
    assert seqs[0] == seqs[1] == seqs[2]
    # Ephemeral frames cross instances too: a pointer from instance 1 reaches a client on instance 0.
    clients[0].drain()
    await clients[1].send({"type": "pointer", "point": [1.0, 2.0, 3.0]})
    pointer = await clients[0].wait_for(lambda f: f["type"] == "pointer", timeout=5)
    assert pointer["user"] == world["engineer"].id and pointer["point"] == [1.0, 2.0, 3.0]
    for client in clients:
        await client.close()


async def test_killed_instance_clients_resume_on_the_other_without_loss(
    world_pg: World, instances: list[ServerProcess]
) -> None:
    world = world_pg
    room = create_room(world, members={"engineer": "participant"})
    a_urls = [instances[0].base_url, instances[1].base_url]
    writers = [
        RoomClient(a_urls, room, world["surgeon"].token, max_backoff_s=0.2),
        RoomClient([instances[1].base_url], room, world["engineer"].token, max_backoff_s=0.2),
    ]
    for writer in writers:
        await writer.connect()
    rng = random.Random(7)
    futures = []

    async def write(index: int, writer: RoomClient) -> None:
        for i in range(150):
            futures.append(writer.submit_op("chat.send", {"text": f"{index}:{i}"}))
            await asyncio.sleep(rng.uniform(0.005, 0.03))

    tasks = [asyncio.create_task(write(i, w)) for i, w in enumerate(writers)]
    await asyncio.sleep(1.0)
    instances[0].kill()
    await asyncio.gather(*tasks)
    seqs = await asyncio.wait_for(asyncio.gather(*futures), 60)
    assert sorted(seqs) == list(range(1, 301))
    assert writers[0].reconnects >= 1 and writers[0].url.startswith(instances[1].base_url.replace("http", "ws"))
    for writer in writers:
        await writer.wait_seq(300, timeout=20)
    histories = [[(m["seq"], m["text"]) for m in w.state.chat] for w in writers]
    assert histories[0] == histories[1]
    for writer in writers:
        await writer.close()


async def test_users_of_a_dead_instance_go_offline_within_ten_seconds(
    world_pg: World, instances: list[ServerProcess]
) -> None:
    world = world_pg
    room = create_room(world, members={"engineer": "participant"})
    async with RoomClient(instances[0].base_url, room, world["surgeon"].token) as here:
        there = RoomClient(instances[1].base_url, room, world["engineer"].token, reconnect=False)
        await there.connect()
        online = await here.wait_for(
            lambda f: f["type"] == "presence" and f["user"] == world["engineer"].id, timeout=10
        )
        assert online["status"] == "online"
        # A late joiner on the first instance sees the remote user in its snapshot (after a heartbeat).
        await asyncio.sleep(4)
        async with RoomClient(instances[0].base_url, room, world["surgeon"].token) as late:
            assert world["engineer"].id in late.presence
        here.drain()
        instances[1].kill()  # no goodbye: only the heartbeat's expiry can tell
        started = asyncio.get_running_loop().time()
        gone = await here.wait_for(lambda f: f["type"] == "presence" and f["status"] == "offline", timeout=15)
        assert gone["user"] == world["engineer"].id
        assert asyncio.get_running_loop().time() - started <= 10


async def test_redis_restart_mid_session_loses_nothing(world_pg: World, tmp_path: Path) -> None:
    world = world_pg
    broker = RedisServer(tmp_path).start()
    env = {
        "TRINITY_DATABASE_URL": world.settings.effective_database_url,
        "TRINITY_REDIS_URL": broker.url,
        "TRINITY_DATA_DIR": str(tmp_path),
    }
    servers = [ServerProcess(env, tmp_path / f"instance-{i}.log").start() for i in range(2)]
    room = create_room(world, members={"engineer": "participant"})
    try:
        a = RoomClient(servers[0].base_url, room, world["surgeon"].token)
        b = RoomClient(servers[1].base_url, room, world["engineer"].token)
        await a.connect()
        await b.connect()
        for i in range(10):
            await a.send_op("chat.send", {"text": f"before {i}"})
        await b.wait_seq(10)
        broker.stop()
        # Redis is gone: each instance still serves its own clients and stores every op.
        for i in range(10):
            await a.send_op("chat.send", {"text": f"during a {i}"})
            await b.send_op("chat.send", {"text": f"during b {i}"})
        async with httpx.AsyncClient() as http:
            for server in servers:
                for _ in range(100):  # each instance notices on its next Redis call (a publish or its reader)
                    ready = await http.get(f"{server.base_url}/readyz")
                    if ready.status_code == 503:
                        break
                    await asyncio.sleep(0.1)
                assert ready.status_code == 503 and ready.json()["checks"]["redis"].startswith("error")
            broker.start()  # same port, empty: as after a restart without persistence
            for _ in range(100):
                states = [(await http.get(f"{s.base_url}/readyz")).status_code for s in servers]
                if states == [200, 200]:
                    break
                await asyncio.sleep(0.1)
            assert states == [200, 200], "instances recover by themselves"
        await a.send_op("chat.send", {"text": "after"})
        for client in (a, b):
            await client.wait_seq(31, timeout=15)
        assert [m["text"] for m in a.state.chat] == [m["text"] for m in b.state.chat]
        assert len(a.state.chat) == 31 and a.reconnects == 0 and b.reconnects == 0
        await a.close()
        await b.close()
    finally:
        for server in servers:
            server.stop()
        broker.stop()
