"""One load-generator process of the fan-out benchmark.

The orchestrator (`bench.fanout`) starts one or more of these with a JSON config on stdin (one line),
waits for every worker to print `READY` (all its clients connected and joined), then writes
`GO <t0>` where t0 is a `time.monotonic()` instant. CLOCK_MONOTONIC is system-wide on Linux, so every
worker (and the orchestrator) shares the same clock and a sender in one process could be matched with
a receiver in another; in practice a worker owns whole rooms, so every message it counts was sent and
received in the same process.

Each client sends at a fixed rate on an absolute schedule (t0 + phase + k/rate, a random phase per
client spreads the sends), and stamps the message with its send time (`time.monotonic()`). Receivers
compute latency = receipt time - send time for every message from another client. Only messages sent
in the measurement window [t0 + warmup, t0 + warmup + duration) count; after the window the worker
waits (bounded) until every expected delivery arrived, then prints a JSON summary and writes the raw
latencies (ms, float64) to `samples_path`.

Clients per server:
- trinity: `server.rooms.client.RoomClient` (a subclass that stamps receipts in `_handle`, the point
  where the frame has just been decoded, which is where the other two clients stamp too);
- raw_websockets: `websockets.asyncio.client.connect` (the library RoomClient itself uses);
- python_socketio: `socketio.AsyncClient`, websocket transport only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
from array import array
from collections.abc import Callable
from typing import Any

import orjson

monotonic = time.monotonic
CONNECT_CONCURRENCY = 10


class Window:
    """Counts and latencies of the messages sent inside the measurement window."""

    def __init__(self) -> None:
        self.t_meas = float("inf")
        self.t_end = float("inf")
        self.latencies = array("d")
        self.received = 0
        self.sent = 0
        self.expected = 0
        self.send_lag = array("d")
        self.errors: dict[str, int] = {}
        self.foreign = 0  # frames we could not attribute (should stay 0)

    def received_at(self, now: float, t_send: float) -> None:
        if self.t_meas <= t_send < self.t_end:
            self.latencies.append((now - t_send) * 1000.0)
            self.received += 1

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


def annotation(ci: int, k: int, t: float) -> dict[str, Any]:
    """annotation.create data for Trinity; the peers relay an op frame carrying exactly this."""
    return {"id": f"c{ci}-{k}", "kind": "marker", "data": {"point": [float(ci), float(k), 12.5]}, "label": repr(t)}


def sender_of(annotation_id: str) -> int:
    return int(annotation_id[1 : annotation_id.index("-")])


# ---- clients -------------------------------------------------------------------------------------
class TrinityClient:
    def __init__(self, base_url: str, room: str, token: str, ci: int, window: Window, workload: str) -> None:
        from server.rooms.client import RoomClient

        self.ci = ci
        self.window = window
        self.workload = workload
        on_frame = self._on_frame

        class StampingRoomClient(RoomClient):
            def _handle(self, frame: dict[str, Any]) -> None:
                now = monotonic()
                if frame.get("type") != "event" or frame.get("seq", 0) > self.state.seq:  # skip resume replays
                    on_frame(now, frame)
                super()._handle(frame)

        # queue_max=1: frames are consumed in _handle above; the client's own frame queue is not read.
        self.room = StampingRoomClient(base_url, room, token, queue_max=1)

    def _on_frame(self, now: float, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "event" and frame.get("kind") == "annotation.created":
            ann = frame["data"]["annotation"]
            if sender_of(ann["id"]) != self.ci:  # the sender gets its own event too; not a fan-out delivery
                self.window.received_at(now, float(ann["label"]))
        elif kind == "pointer":
            point = frame.get("point")
            if point and int(point[2]) != self.ci:
                self.window.received_at(now, point[0])
        elif kind == "error":
            self.window.error(str(frame.get("code")))

    async def connect(self) -> None:
        await self.room.connect(timeout=60)

    async def send(self, k: int, t: float) -> None:
        if self.workload == "annotations":
            data = annotation(self.ci, k, t)
            future = self.room.submit_op("annotation.create", data, op_id=data["id"])
            future.add_done_callback(_consume)
        else:
            await self.room.send({"type": "pointer", "point": [t, float(k), float(self.ci)]})

    @property
    def reconnects(self) -> int:
        return self.room.reconnects

    async def close(self) -> None:
        await self.room.close()


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _peer_message(workload: str, ci: int, k: int, t: float) -> dict[str, Any]:
    if workload == "annotations":
        data = annotation(ci, k, t)
        return {"type": "op", "op_id": data["id"], "kind": "annotation.create", "data": data}
    return {"type": "pointer", "point": [t, float(k), float(ci)]}


class PeerReceiver:
    """Decoding of what the raw and Socket.IO relays deliver: the sender's message, as sent."""

    ci: int
    window: Window

    def _on_message(self, now: float, message: dict[str, Any]) -> None:
        if message.get("type") == "op":
            data = message["data"]
            sender, t_send = sender_of(data["id"]), float(data["label"])
        elif message.get("type") == "pointer":
            point = message["point"]
            sender, t_send = int(point[2]), point[0]
        else:
            self.window.foreign += 1
            return
        if sender == self.ci:
            self.window.foreign += 1  # a relay must not echo to the sender
            return
        self.window.received_at(now, t_send)


class RawClient(PeerReceiver):
    def __init__(self, base_url: str, room: str, ci: int, window: Window, workload: str) -> None:
        self.url = base_url.replace("http://", "ws://") + "/" + room
        self.ci = ci
        self.window = window
        self.workload = workload
        self.ws: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.reconnects = 0

    async def connect(self) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(self.url, max_size=2**24, open_timeout=60)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                self._on_message(monotonic(), orjson.loads(raw))

    async def send(self, k: int, t: float) -> None:
        await self.ws.send(orjson.dumps(_peer_message(self.workload, self.ci, k, t)).decode())

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)
        if self.reader:
            self.reader.cancel()
            with contextlib.suppress(BaseException):
                await self.reader


class SocketIOClient(PeerReceiver):
    def __init__(self, base_url: str, room: str, ci: int, window: Window, workload: str) -> None:
        import socketio

        self.base_url = base_url
        self.room = room
        self.ci = ci
        self.window = window
        self.workload = workload
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("m", self._on_m)
        self.reconnects = 0

    async def _on_m(self, data: dict[str, Any]) -> None:
        self._on_message(monotonic(), data)

    async def connect(self) -> None:
        await self.sio.connect(self.base_url, transports=["websocket"], auth={"room": self.room}, wait_timeout=60)

    async def send(self, k: int, t: float) -> None:
        await self.sio.emit("m", _peer_message(self.workload, self.ci, k, t))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sio.disconnect(), 5)


# ---- the run -------------------------------------------------------------------------------------
def make_client(config: dict[str, Any], room: dict[str, Any], ci: int, window: Window) -> Any:
    server, base_url, workload = config["server"], config["base_url"], config["workload"]
    if server == "trinity":
        return TrinityClient(base_url, room["id"], room["tokens"][ci], ci, window, workload)
    if server == "raw_websockets":
        return RawClient(base_url, room["id"], ci, window, workload)
    if server == "python_socketio":
        return SocketIOClient(base_url, room["id"], ci, window, workload)
    raise ValueError(server)


async def send_loop(client: Any, window: Window, room_sent: list[int], t0: float, rate: float, rng: random.Random) -> None:
    interval = 1.0 / rate
    phase = rng.random() * interval
    k = 0
    while True:
        scheduled = t0 + phase + k * interval
        if scheduled >= window.t_end:
            return
        delay = scheduled - monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = monotonic()
        if t >= window.t_end:
            return
        await client.send(k, t)
        if t >= window.t_meas:
            room_sent[0] += 1
            window.sent += 1
            window.send_lag.append((t - scheduled) * 1000.0)
        k += 1


async def read_line() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def run(config: dict[str, Any]) -> dict[str, Any]:
    window = Window()
    rooms = config["rooms"]
    clients: list[tuple[Any, int]] = []  # (client, room index)
    for r, room in enumerate(rooms):
        for ci in range(room["clients"]):
            clients.append((make_client(config, room, ci, window), r))
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect(client: Any) -> None:
        async with gate:
            await client.connect()

    await asyncio.wait_for(asyncio.gather(*(connect(c) for c, _ in clients)), config["connect_timeout_s"])
    print("READY", flush=True)
    line = (await asyncio.wait_for(read_line(), 120)).split()
    if not line or line[0] != "GO":
        raise SystemExit(f"expected GO, got {line!r}")
    t0 = float(line[1])
    window.t_meas = t0 + config["warmup_s"]
    window.t_end = window.t_meas + config["duration_s"]
    rng = random.Random(config.get("seed", 1))
    room_sent = [[0] for _ in rooms]
    cpu_start: float | None = None

    async def cpu_mark() -> None:
        nonlocal cpu_start
        await asyncio.sleep(max(0.0, window.t_meas - monotonic()))
        cpu_start = time.process_time()

    marker = asyncio.create_task(cpu_mark())
    senders = [asyncio.create_task(send_loop(c, window, room_sent[r], t0, config["rate"], rng)) for c, r in clients]
    await asyncio.wait_for(asyncio.gather(*senders), config["warmup_s"] + config["duration_s"] + 60)
    await marker
    cpu_used = time.process_time() - (cpu_start or 0.0)
    cpu_wall = monotonic() - window.t_meas
    window.expected = sum(sent[0] * (room["clients"] - 1) for sent, room in zip(room_sent, rooms, strict=True))
    drain_deadline = monotonic() + config["drain_s"]
    while window.received < window.expected and monotonic() < drain_deadline:
        await asyncio.sleep(0.02)
    drained_s = monotonic() - window.t_end
    reconnects = sum(getattr(c, "reconnects", 0) for c, _ in clients)
    await asyncio.wait_for(asyncio.gather(*(c.close() for c, _ in clients), return_exceptions=True), 30)
    with open(config["samples_path"], "wb") as f:
        window.latencies.tofile(f)
    with open(config["samples_path"] + ".lag", "wb") as f:
        window.send_lag.tofile(f)
    return {
        "sent": window.sent,
        "expected": window.expected,
        "received": window.received,
        "errors": window.errors,
        "foreign": window.foreign,
        "reconnects": reconnects,
        "drained_s": round(drained_s, 3),
        "cpu_percent": round(100.0 * cpu_used / cpu_wall, 1) if cpu_wall > 0 else None,
    }


def main() -> None:
    config = json.loads(sys.stdin.readline())
    sys.path.insert(0, config["repo"])
    try:
        import uvloop

        summary = uvloop.run(run(config))
    except ImportError:
        summary = asyncio.run(run(config))
    print("RESULT " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
