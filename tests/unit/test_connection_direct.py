"""Direct writes (the `trinity.direct` extension, server/core/ws_direct.py): frames queued during a hot
path leave together when it flushes, in order; over a full socket buffer the sender task takes over and
nothing is lost or reordered; once the buffer drains, writes are direct again."""

from __future__ import annotations

import asyncio

import orjson

from server.rooms.connection import Connection, PendingWrites


class FakeSocket:
    """The extension's calls over a list of written messages, with a switchable full buffer."""

    def __init__(self) -> None:
        self.direct: list[str] = []  # written by `send` (synchronously)
        self.awaited: list[str] = []  # written by the ASGI path (the sender task)
        self.full = False
        self.drained = asyncio.Event()
        self.drained.set()

    def can_send(self) -> bool:
        return not self.full

    def send(self, text: str) -> None:
        assert not self.full, "a direct write over a full buffer"
        self.direct.append(text)

    async def send_text(self, text: str) -> None:
        await self.drained.wait()
        self.awaited.append(text)

    async def close(self, code: int, reason: str) -> None:
        return None

    def frames(self) -> list[dict]:
        return [orjson.loads(line) for message in self.direct + self.awaited for line in message.split("\n")]


def connection(socket: FakeSocket, writes: PendingWrites | None, batch: int = 64 * 1024) -> Connection:
    return Connection(
        socket.send_text,
        socket.close,
        user_id="u",
        display_name="U",
        site_id="s",
        role="participant",
        queue_max=1000,
        batch_max_bytes=batch,
        direct={"can_send": socket.can_send, "send": socket.send} if writes else None,
        writes=writes,
    )


def event(seq: int) -> str:
    return orjson.dumps({"type": "event", "seq": seq}).decode()


async def test_frames_queued_before_a_flush_leave_in_one_direct_write() -> None:
    socket, writes = FakeSocket(), PendingWrites()
    conn = connection(socket, writes)
    sender = asyncio.create_task(conn.run_sender())
    for seq in (1, 2, 3):
        conn.push(event(seq))
    pointer = orjson.dumps({"type": "pointer", "user": "a"}).decode()
    conn.push_latest("pointer:a", pointer)
    assert socket.direct == []  # nothing is written until the hot path flushes
    writes.flush()
    assert socket.direct == [f"{event(1)}\n{event(2)}\n{event(3)}", pointer]
    assert socket.awaited == [] and conn.backlog == 0
    conn.drop(1000, "done")
    await asyncio.wait_for(sender, 1)


async def test_a_frame_pushed_outside_a_hot_path_is_written_by_the_scheduled_flush() -> None:
    socket, writes = FakeSocket(), PendingWrites()
    conn = connection(socket, writes, batch=0)
    conn.push(event(1))
    await asyncio.sleep(0)
    assert socket.direct == [event(1)]


async def test_a_full_buffer_hands_over_to_the_sender_task_and_order_is_kept() -> None:
    socket, writes = FakeSocket(), PendingWrites()
    conn = connection(socket, writes, batch=0)
    sender = asyncio.create_task(conn.run_sender())
    conn.push(event(1))
    writes.flush()
    socket.full = True
    socket.drained.clear()
    for seq in range(2, 6):
        conn.push(event(seq))
    writes.flush()
    for _ in range(5):
        await asyncio.sleep(0)
    assert socket.direct == [event(1)] and conn.backlog > 0  # waiting for the drain, not written
    socket.full = False
    conn.push(event(6))  # the sender task is mid-write: this one queues behind it
    writes.flush()
    socket.drained.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert [f["seq"] for f in socket.frames()] == [1, 2, 3, 4, 5, 6]
    assert socket.awaited  # the task wrote what waited for the drain
    conn.push(event(7))
    writes.flush()
    assert socket.direct[-1] == event(7)  # and then writes are direct again
    conn.drop(1000, "done")
    await asyncio.wait_for(sender, 1)


async def test_without_the_extension_every_frame_goes_through_the_sender_task() -> None:
    socket = FakeSocket()
    conn = connection(socket, None, batch=0)
    sender = asyncio.create_task(conn.run_sender())
    for seq in (1, 2):
        conn.push(event(seq))
    for _ in range(10):
        await asyncio.sleep(0)
    assert socket.direct == [] and socket.awaited == [event(1), event(2)]
    conn.drop(1000, "done")
    await asyncio.wait_for(sender, 1)
