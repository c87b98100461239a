"""Killing the server (SIGKILL) mid-stream loses no acknowledged op, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from server.rooms.client import RoomClient
from tests.support.process import ServerProcess
from tests.support.world import World, create_room


async def test_killed_server_loses_no_acknowledged_op(world: World, tmp_path: Path) -> None:
    room = create_room(world, members={"engineer": "participant"})
    env = {"TRINITY_DATABASE_URL": world.settings.effective_database_url, "TRINITY_DATA_DIR": str(tmp_path)}
    server = ServerProcess(env, tmp_path / "server.log").start()
    acknowledged: dict[str, int] = {}
    try:
        writers = [
            RoomClient(server.base_url, room, world[name].token, max_backoff_s=0.2) for name in ("surgeon", "engineer")
        ]
        for writer in writers:
            await writer.connect()

        async def write(index: int, writer: RoomClient) -> None:
            i = 0
            while True:
                op_id = f"w{index}-{i}"
                future = writer.submit_op(
                    "annotation.create", {"id": op_id, "kind": "marker", "data": {"point": [i, index, 0]}}, op_id=op_id
                )
                future.add_done_callback(
                    lambda f, op_id=op_id: acknowledged.__setitem__(op_id, f.result()) if not f.exception() else None
                )
                i += 1
                await asyncio.sleep(0.03)  # ~33 ops/s per writer, under the per-connection limit

        tasks = [asyncio.create_task(write(i, w)) for i, w in enumerate(writers)]
        await asyncio.sleep(2.0)
        server.kill()
        killed_with = dict(acknowledged)
        assert len(killed_with) > 50, "the writers were acknowledged before the kill"
        await asyncio.sleep(0.3)
        server.start()
        await asyncio.sleep(1.0)  # the clients reconnect by themselves, resume and resend what was unacknowledged
        for task in tasks:
            task.cancel()
        for writer in writers:
            for _ in range(400):
                if not writer.pending_ops:
                    break
                await asyncio.sleep(0.05)
            assert writer.pending_ops == 0, (
                f"{writer.pending_ops} ops never acknowledged; reconnects={writer.reconnects}"
            )
            await writer.close()

        async with RoomClient(server.base_url, room, world["surgeon"].token) as reader:
            stored = {a["id"]: a for a in reader.state.snapshot()["annotations"]}
            seq = reader.seq
        missing = [op_id for op_id in killed_with if op_id not in stored]
        assert not missing, f"acknowledged before the kill but lost: {missing[:5]}"
        assert len(stored) == seq, "one annotation per sequence number: nothing applied twice"
        assert set(acknowledged) <= set(stored)
        assert sorted(acknowledged.values()) == sorted(set(acknowledged.values()))
    finally:
        server.stop()
