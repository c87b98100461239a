"""Rooms over WebSocket: ordering, convergence, resume, and no lost or duplicated op."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from server.rooms.client import RoomClient, RoomError
from tests.support.world import LiveServer, World, create_room


def marker(annotation_id: str, x: float) -> dict[str, Any]:
    return {"id": annotation_id, "kind": "marker", "data": {"point": [x, 0.0, 0.0]}}


async def test_two_clients_annotating_concurrently_converge(world: World, live: LiveServer) -> None:
    room = create_room(world, members={"engineer": "participant"})
    async with (
        RoomClient(live.base_url, room, world["surgeon"].token) as a,
        RoomClient(live.base_url, room, world["engineer"].token) as b,
    ):
        for i in range(10):
            await a.send_op("annotation.create", marker(f"shared{i}", i))
        await b.wait_seq(10)

        async def edit(client: RoomClient, tag: str) -> None:
            rng = random.Random(tag)
            for step in range(40):
                target = f"shared{rng.randrange(10)}"
                current = client.state.annotations[target]
                try:
                    if current.get("deleted"):
                        continue
                    await client.send_op(
                        "annotation.update", {"id": target, "base_version": current["version"], "label": f"{tag}{step}"}
                    )
                except RoomError as exc:
                    assert exc.code == "stale_version"  # the other writer got there first: rebase next time
                if step % 7 == 0:
                    await client.send_op("annotation.create", marker(f"{tag}{step}", step))

        await asyncio.gather(edit(a, "a"), edit(b, "b"))
        final = max(a.seq, b.seq)
        await a.wait_seq(final)
        await b.wait_seq(final)
        assert a.state.snapshot()["annotations"] == b.state.snapshot()["annotations"]
        assert a.state.annotations == b.state.annotations

    # A late joiner's snapshot is the same state.
    async with RoomClient(live.base_url, room, world["surgeon"].token) as c:
        assert {x["id"]: x for x in c.state.snapshot()["annotations"]} == {
            x["id"]: x for x in a.state.snapshot()["annotations"]
        }


async def test_300_ops_from_3_clients_with_random_disconnects_lose_and_duplicate_nothing(
    world: World, live: LiveServer
) -> None:
    await three_clients_with_random_disconnects(world, live)


async def test_plain_asgi_without_the_direct_path_loses_and_duplicates_nothing(world_sqlite: World) -> None:
    """Under another ASGI server (no `trinity.direct` extension) frames go through ASGI both ways."""
    async with LiveServer(world_sqlite.settings, direct=False) as live:
        await three_clients_with_random_disconnects(world_sqlite, live)


async def three_clients_with_random_disconnects(world: World, live: LiveServer) -> None:
    room = create_room(world, members={"engineer": "participant", "radiologist": "participant"})
    names = ["surgeon", "engineer", "radiologist"]
    clients = [RoomClient(live.base_url, room, world[n].token, max_backoff_s=0.2) for n in names]
    for client in clients:
        await client.connect()
    rng = random.Random(300)

    async def chaos() -> None:
        for _ in range(25):
            await asyncio.sleep(rng.uniform(0.01, 0.08))
            rng.choice(clients).force_disconnect()

    async def produce(index: int, client: RoomClient) -> list[int]:
        futures = []
        for i in range(100):
            futures.append(client.submit_op("chat.send", {"text": f"{index}:{i}"}))
            if i % 10 == 0:
                await asyncio.sleep(rng.uniform(0, 0.02))
        return list(await asyncio.wait_for(asyncio.gather(*futures), 60))

    chaos_task = asyncio.create_task(chaos())
    acked = await asyncio.gather(*(produce(i, c) for i, c in enumerate(clients)))
    await chaos_task
    assert sum(c.reconnects for c in clients) > 0
    all_seqs = sorted(s for seqs in acked for s in seqs)
    assert all_seqs == list(range(1, 301)), "every op acknowledged exactly once, with dense sequence numbers"
    for client in clients:
        await client.wait_seq(300, timeout=20)
    histories = [[(m["seq"], m["text"]) for m in c.state.chat] for c in clients]
    assert histories[0] == histories[1] == histories[2]
    texts = [text for _, text in histories[0]]
    assert len(texts) == len(set(texts)) == 200  # the snapshot keeps the last 200; none duplicated
    # Each sender's own messages appear in the order it sent them.
    async with live.http(world["surgeon"]) as http:
        events = (await http.get(f"/api/rooms/{room}/events", params={"limit": 1000})).json()
    assert [e["seq"] for e in events] == list(range(1, 301))
    for index in range(3):
        mine = [int(e["data"]["text"].split(":")[1]) for e in events if e["data"]["text"].startswith(f"{index}:")]
        assert mine == list(range(100))
    for client in clients:
        await client.close()


async def test_resume_delivers_missed_ops_in_order_and_resends_unacked(
    world_sqlite: World, live_sqlite: LiveServer
) -> None:
    world, live = world_sqlite, live_sqlite
    room = create_room(world, members={"engineer": "participant"})
    async with (
        RoomClient(live.base_url, room, world["surgeon"].token) as a,
        RoomClient(live.base_url, room, world["engineer"].token, reconnect=False) as b,
    ):
        await a.send_op("chat.send", {"text": "first"})
        await b.wait_seq(1)
        epoch = b.epoch
        await b.close()
        for i in range(5):
            await a.send_op("chat.send", {"text": f"missed {i}"})
        resumed = RoomClient(live.base_url, room, world["engineer"].token)
        resumed.state, resumed.epoch = b.state, epoch  # carry over what b had seen
        pending = resumed.submit_op("chat.send", {"text": "written offline"}, op_id="offline-1")
        await resumed.connect()
        header = await resumed.next_frame()
        assert header["type"] == "resumed" and header["from_seq"] == 1
        frames = [await resumed.next_frame() for _ in range(5)]
        assert [f["seq"] for f in frames] == [2, 3, 4, 5, 6]
        assert await pending == 7
        # Re-sending the same op id is acknowledged again, not applied twice.
        assert await resumed.send_op("chat.send", {"text": "written offline"}, op_id="offline-1") == 7
        ack = await resumed.wait_for(lambda f: f["type"] == "ack" and f.get("duplicate"))
        assert ack["seq"] == 7
        await a.wait_seq(7)
        assert [m["text"] for m in a.state.chat].count("written offline") == 1
        await resumed.close()


async def test_resume_with_unknown_epoch_or_too_far_behind_gets_a_snapshot(world_sqlite: World) -> None:
    world = world_sqlite
    settings = world.settings.model_copy(update={"room_resume_max_ops": 3})
    room = create_room(world, members={"engineer": "participant"})
    async with LiveServer(settings) as live, RoomClient(live.base_url, room, world["surgeon"].token) as a:
        for i in range(6):
            await a.send_op("chat.send", {"text": str(i)})
        for epoch, seq in ((a.epoch, 1), ("not-the-epoch", 5)):
            late = RoomClient(live.base_url, room, world["engineer"].token)
            late.epoch = epoch
            late.state.seq = seq
            await late.connect()
            first = await late.next_frame()
            assert first["type"] == "welcome" and first["snapshot"]["seq"] == 6
            assert [m["text"] for m in late.state.chat] == ["0", "1", "2", "3", "4", "5"]
            await late.close()


async def test_reloaded_room_keeps_chat_scene_and_presenter(world_sqlite: World, live_sqlite: LiveServer) -> None:
    world, live = world_sqlite, live_sqlite
    room = create_room(world)
    async with RoomClient(live.base_url, room, world["surgeon"].token) as a:
        await a.send_op("chat.send", {"text": "plan: resect 2 cm margin"})
        await a.send_op("scene.model.add", {"id": "mandible", "name": "Mandible", "url": "/m.glb"})
        await a.send_op("scene.model.set", {"id": "mandible", "opacity": 0.5})
        await a.send_op("presenter.take")
    # A fresh server on the same database rebuilds the room from its log.
    async with LiveServer(world.settings) as second, RoomClient(second.base_url, room, world["surgeon"].token) as b:
        snapshot = b.state.snapshot()
        assert snapshot["chat"][0]["text"] == "plan: resect 2 cm margin"
        assert snapshot["models"][0]["opacity"] == 0.5
        assert snapshot["presenter"] == world["surgeon"].id


@pytest.mark.parametrize("count", [3])
async def test_presence_pointer_and_camera(world_sqlite: World, live_sqlite: LiveServer, count: int) -> None:
    world, live = world_sqlite, live_sqlite
    room = create_room(world, members={"engineer": "participant", "observer": "observer"})
    async with (
        RoomClient(live.base_url, room, world["surgeon"].token) as a,
        RoomClient(live.base_url, room, world["engineer"].token) as b,
    ):
        online = await a.wait_for(lambda f: f["type"] == "presence" and f["user"] == world["engineer"].id)
        assert online["status"] == "online" and online["color"].startswith("#")
        await b.send({"type": "presence", "status": "idle"})
        idle = await a.wait_for(lambda f: f["type"] == "presence" and f["status"] == "idle")
        assert idle["user"] == world["engineer"].id
        # Camera: only the presenter moves it.
        await b.send({"type": "camera", "position": [0, -300, 0], "target": [0, 0, 0]})
        refused = await b.wait_for(lambda f: f["type"] == "error")
        assert refused["code"] == "not_presenter"
        await a.send_op("presenter.take")
        await a.send({"type": "camera", "position": [0, -300, 0], "target": [0, 0, 0], "up": [0, 0, 1], "fov_deg": 40})
        cam = await b.wait_for(lambda f: f["type"] == "camera")
        assert cam["position"] == [0.0, -300.0, 0.0] and cam["user"] == world["surgeon"].id
        # Pointer bursts are coalesced: the latest always arrives, far fewer than were sent.
        for i in range(50):
            await b.send({"type": "pointer", "point": [float(i), 1.0, 2.0]})
        seen = []
        while True:
            frame = await a.wait_for(lambda f: f["type"] == "pointer", timeout=3)
            seen.append(frame["point"][0])
            if frame["point"][0] == 49.0:
                break
        assert len(seen) < 50
        async with RoomClient(live.base_url, room, world["observer"].token) as c:
            assert c.camera is not None and c.camera["target"] == [0.0, 0.0, 0.0]
            assert {p["user"] for p in c.presence.values()} >= {world["surgeon"].id, world["engineer"].id}
        offline = await a.wait_for(lambda f: f["type"] == "presence" and f["status"] == "offline")
        assert offline["user"] == world["observer"].id


async def test_the_served_protocol_reads_and_writes_frames_directly(world_sqlite: World) -> None:
    """`trinity serve`'s uvicorn protocol (server/core/ws_direct.py) offers the direct extension and
    the room socket uses it both ways; a uvicorn upgrade that broke it would fall back silently."""
    room = create_room(world_sqlite, members={"engineer": "participant"})
    async with (
        LiveServer(world_sqlite.settings) as live,
        RoomClient(live.base_url, room, world_sqlite["surgeon"].token) as a,
        RoomClient(live.base_url, room, world_sqlite["engineer"].token) as b,
    ):
        hub = live.app.state.hubs.loaded(room)
        assert hub is not None and all(conn.direct for conn in hub.connections.values())
        protocols = [p for p in live.server.server_state.connections if hasattr(p, "receive_with")]
        assert len(protocols) == 2 and all(p._receiver is not None for p in protocols)
        assert await a.send_op("annotation.create", marker("m1", 1.0)) == 1
        await b.wait_seq(1)
        assert b.state.annotations["m1"]["data"]["point"] == [1.0, 0.0, 0.0]


async def test_ops_written_at_once_keep_the_call_order_and_survive_a_disconnect(world_sqlite: World) -> None:
    """`submit_op_now` writes an op itself when nothing is queued before it; mixed with queued ops and
    a dropped connection, every op is stored once, in the order of the calls."""
    room = create_room(world_sqlite)
    async with (
        LiveServer(world_sqlite.settings) as live,
        RoomClient(live.base_url, room, world_sqlite["surgeon"].token, max_backoff_s=0.1) as client,
    ):
        futures = []
        for i in range(60):
            if i % 3 == 0:
                futures.append(client.submit_op("chat.send", {"text": str(i)}))  # through the pacer
            else:
                futures.append(await client.submit_op_now("chat.send", {"text": str(i)}))
            if i == 30:
                client.force_disconnect()
        seqs = await asyncio.wait_for(asyncio.gather(*futures), 30)
        assert client.reconnects >= 1
        assert seqs == sorted(seqs) and len(set(seqs)) == 60
        await client.wait_seq(max(seqs))
        assert [m["text"] for m in client.state.chat] == [str(i) for i in range(60)]
