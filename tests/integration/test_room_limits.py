"""Bad, oversized, unauthorized and too-fast frames get typed errors; nobody else notices."""

from __future__ import annotations

import asyncio
import base64
import os

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.rooms.client import RoomClient, RoomClosed, RoomError
from tests.support.world import LiveServer, World, create_room


async def _raw_join(live: LiveServer, room: str, hello: dict | str | None) -> tuple[list[dict], int | None]:
    """Connect without the client library; return the frames received and the close code."""
    frames: list[dict] = []
    url = live.base_url.replace("http", "ws") + f"/ws/rooms/{room}"
    async with connect(url) as ws:
        if hello is not None:
            await ws.send(hello if isinstance(hello, str) else orjson.dumps(hello).decode())
        try:
            async for raw in ws:
                frames.append(orjson.loads(raw))
        except ConnectionClosed:
            pass
        return frames, ws.close_code


async def test_unauthorized_joins_are_refused_with_typed_errors(world_sqlite: World, live_sqlite: LiveServer) -> None:
    world, live = world_sqlite, live_sqlite
    room = create_room(world)
    frames, code = await _raw_join(live, room, {"type": "hello", "protocol": 1, "token": "forged"})
    assert code == 4001 and frames[0]["code"] == "unauthenticated"
    frames, code = await _raw_join(live, room, {"type": "hello", "protocol": 1, "token": world["engineer"].token})
    assert code == 4004 and frames[0]["code"] == "not_found"  # same site, but not a member
    frames, code = await _raw_join(live, room, {"type": "hello", "protocol": 99, "token": world["surgeon"].token})
    assert code == 4010 and frames[0]["code"] == "protocol_version"
    frames, code = await _raw_join(live, room, "not json")
    assert code == 4010 and frames[0]["code"] == "bad_message"
    frames, code = await _raw_join(live, "no-such-room", {"type": "hello", "token": world["surgeon"].token})
    assert code == 4004
    with pytest.raises(RoomClosed):
        await RoomClient(live.base_url, room, world["b-surgeon"].token).connect()


async def test_no_hello_in_time_is_closed(world_sqlite: World) -> None:
    world = world_sqlite
    room = create_room(world)
    async with LiveServer(world.settings.model_copy(update={"ws_auth_timeout_s": 0.3})) as live:
        frames, code = await _raw_join(live, room, None)
    assert code == 4012 and frames[0]["code"] == "unauthenticated"


async def test_malformed_oversized_and_too_fast_frames_get_errors_while_others_are_unaffected(
    world_sqlite: World,
) -> None:
    world = world_sqlite
    settings = world.settings.model_copy(
        update={"ws_max_message_bytes": 2048, "ws_rate_per_s": 20, "ws_rate_burst": 20}
    )
    room = create_room(world, members={"engineer": "participant", "observer": "observer"})
    async with (
        LiveServer(settings) as live,
        RoomClient(live.base_url, room, world["surgeon"].token) as bad,
        RoomClient(live.base_url, room, world["engineer"].token) as good,
    ):

        async def error_for(raw: str | bytes) -> dict:
            await bad.send_raw(raw)
            return await bad.wait_for(lambda f: f["type"] == "error")

        assert (await error_for("{nope"))["code"] == "bad_message"
        assert (await error_for("[1, 2]"))["code"] == "bad_message"
        assert (await error_for(b"\xff\xfe binary junk"))["code"] == "bad_message"
        assert (await error_for('{"type": "teleport"}'))["code"] == "unknown_type"
        assert (await error_for('{"type": "op", "kind": "annotation.create", "data": {}}'))["code"] == "bad_message"
        assert (await error_for('{"type": "op", "op_id": "x", "kind": "drop.tables", "data": {}}'))[
            "code"
        ] == "unknown_type"
        assert (await error_for('{"type": "pointer", "point": [1, "a", 3]}'))["code"] == "invalid_op"
        assert (await error_for('{"type": "chat", "text": "' + "x" * 5000 + '"}'))["code"] == "too_large"
        with pytest.raises(RoomError) as info:
            await bad.send_op(
                "annotation.create", {"id": "n", "kind": "note", "data": {"text": "ok"}, "label": "x" * 201}
            )
        assert info.value.code == "invalid_op"
        # Too fast: a burst beyond the bucket is refused frame by frame, not by disconnecting.
        await asyncio.sleep(1.1)
        for i in range(60):  # raw: the client library itself would pace these
            await bad.send_raw(orjson.dumps({"type": "ping", "t": i}))
        limited = await bad.wait_for(lambda f: f["type"] == "error" and f["code"] == "rate_limited")
        assert "frames/s" in limited["message"]
        # Meanwhile the well-behaved client works normally, and the bad one recovers after a pause.
        assert await good.send_op("chat.send", {"text": "still here"}) >= 1
        await asyncio.sleep(1.1)
        seq = await bad.send_op("chat.send", {"text": "sorry"})
        await good.wait_seq(seq)
        assert [m["text"] for m in good.state.chat] == ["still here", "sorry"]
        async with RoomClient(live.base_url, room, world["observer"].token) as watcher:
            with pytest.raises(RoomError) as info:
                await watcher.send_op("annotation.create", {"id": "w", "kind": "marker", "data": {"point": [0, 0, 0]}})
            assert info.value.code == "forbidden"
        async with live.http() as http:
            metrics = (await http.get("/metrics")).text
        assert 'trinity_ws_errors_total{code="rate_limited"}' in metrics


async def test_a_client_that_stops_reading_is_dropped_and_others_keep_flowing(world_sqlite: World) -> None:
    world = world_sqlite
    settings = world.settings.model_copy(
        update={"ws_send_stall_s": 1.0, "ws_rate_per_s": 1000, "ws_rate_burst": 1000, "chat_max_chars": 60_000}
    )
    room = create_room(world, members={"engineer": "participant", "radiologist": "participant"})
    url = None
    async with (
        LiveServer(settings) as live,
        RoomClient(live.base_url, room, world["surgeon"].token) as writer,
        RoomClient(live.base_url, room, world["engineer"].token) as reader,
    ):
        url = live.base_url.replace("http", "ws") + f"/ws/rooms/{room}"
        # A raw client with a tiny receive buffer that never reads.
        async with connect(url, max_queue=1) as stuck:
            await stuck.send(orjson.dumps({"type": "hello", "token": world["radiologist"].token}).decode())
            await asyncio.sleep(0.2)
            stuck.transport.pause_reading()
            # 200 incompressible 50 kB texts overflow every socket buffer between the two (even deflated).
            big = base64.b64encode(os.urandom(37_500)).decode()
            futures = [writer.submit_op("chat.send", {"text": f"{i} {big}"}) for i in range(200)]
            seqs = await asyncio.wait_for(asyncio.gather(*futures), 30)
            await asyncio.sleep(1.5)  # the stuck client has now taken nothing for longer than the stall limit
            seqs.append(await writer.send_op("chat.send", {"text": "one more"}))
            await reader.wait_seq(max(seqs), timeout=20)
            assert len(reader.state.chat) == 200 and reader.state.seq == 201
            assert writer.reconnects == 0 and reader.reconnects == 0
            async with live.http() as http:
                metrics = (await http.get("/metrics")).text
            dropped = [
                line for line in metrics.splitlines() if line.startswith("trinity_ws_slow_consumers_dropped_total")
            ]
            assert dropped and float(dropped[0].split()[-1]) >= 1
            # The dropped client leaves the room at once, though its full socket cannot take a close frame.
            hub = live.app.state.hubs.loaded(room)
            assert hub is not None
            for _ in range(50):
                if len(hub.connections) == 2:
                    break
                await asyncio.sleep(0.1)
            assert sorted(c.user_id for c in hub.connections.values()) == sorted(
                world[name].id for name in ("surgeon", "engineer")
            )


async def test_a_full_room_refuses_the_next_user(world_sqlite: World) -> None:
    world = world_sqlite
    room = create_room(world, members={"engineer": "participant", "radiologist": "participant"})
    settings = world.settings.model_copy(update={"room_max_online": 2})
    async with (
        LiveServer(settings) as live,
        RoomClient(live.base_url, room, world["surgeon"].token),
        RoomClient(live.base_url, room, world["engineer"].token),
    ):
        with pytest.raises(RoomClosed) as info:
            await RoomClient(live.base_url, room, world["radiologist"].token).connect()
        assert info.value.code == 4009
        # A second tab of someone already in the room is not a new participant.
        async with RoomClient(live.base_url, room, world["surgeon"].token) as second_tab:
            assert second_tab.connected


async def test_an_op_the_core_cannot_handle_is_refused_and_the_room_goes_on(
    world_sqlite: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the pure core on some input (simulated) answers that op with `internal`; the room's
    other ops, joins and clients carry on. An annotation kind of the wrong type is a plain `invalid_op`."""
    import server.rooms.commit as commit

    real_decide = commit.decide

    def decide(state, actor, kind, payload, **kwargs):  # type: ignore[no-untyped-def]
        if payload.get("text") == "boom":
            raise TypeError("a bug")
        return real_decide(state, actor, kind, payload, **kwargs)

    monkeypatch.setattr(commit, "decide", decide)
    room = create_room(world_sqlite, members={"engineer": "participant"})
    async with (
        LiveServer(world_sqlite.settings) as live,
        RoomClient(live.base_url, room, world_sqlite["surgeon"].token) as a,
    ):
        with pytest.raises(RoomError) as info:
            await a.send_op("chat.send", {"text": "boom"})
        assert info.value.code == "internal"
        with pytest.raises(RoomError) as info:
            await a.send_op("annotation.create", {"id": "z", "kind": {}, "data": {}})
        assert info.value.code == "invalid_op"
        assert await a.send_op("chat.send", {"text": "after"}) == 1
        async with RoomClient(live.base_url, room, world_sqlite["engineer"].token) as b:
            assert await b.send_op("chat.send", {"text": "joined"}) == 2
            await a.wait_seq(2)
