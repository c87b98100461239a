"""One load-generator process of the fan-out benchmark (started by `bench.fanout`).

Protocol on stdin/stdout: the orchestrator writes one JSON config line; the worker connects all its
clients and prints `READY`; the orchestrator writes `GO <t0>`, t0 a `time.monotonic()` instant; the
worker runs and prints `RESULT {json}`. CLOCK_MONOTONIC is system-wide on Linux, so all workers and
the orchestrator share one clock; a worker owns whole rooms, so each message it counts was sent and
received in this process anyway.

Each client sends on an absolute schedule, t0 + phase + k/rate (a random phase per client spreads
the sends), and puts its send instant (`time.monotonic()`) in the message. A receiver computes
latency = receipt instant - send instant for every message from another client. Only messages
sent in the window [t0 + warmup, t0 + warmup + duration) count. After the window the worker waits,
at most `drain_s`, until every expected delivery arrived, then writes the latencies (ms, float64)
to `samples_path` and how late each send was against its schedule to `samples_path.lag`.

Trinity as several instances (`base_urls` in the config, bench/fanout_cluster): client k of a room
connects to instance k mod n (RoomClient gets the list starting there, so a reconnect would move on
to the next instance), and `samples_path.cross` holds one byte per latency, 1 when the sender was
connected to another instance than the receiver.

The clients, one per server, stamp a message as soon as their library hands it over decoded:
- trinity: `server.rooms.client.RoomClient`, subclassed to stamp in `_handle` (where each frame
  arrives decoded, before it updates the client's replica of the room);
- raw_websockets: `websockets.asyncio.client.connect` (the library RoomClient is built on);
- python_socketio: `socketio.AsyncClient`, websocket transport only, stamped in the event handler.

The cyclic garbage collector is off in the load generator from READY to the end of the run (see
`run`), for all three servers alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import random
import sys
import time
from array import array
from typing import Any

import orjson

monotonic = time.monotonic
CONNECT_CONCURRENCY = 10


class Window:
    """What was sent and received inside the measurement window."""

    def __init__(self, instances: int = 1) -> None:
        self.instances = instances  # Trinity instances the clients are spread over
        self.cross = array("b")  # per latency (instances > 1): 1 = the sender is on another instance
        self.t_meas = float("inf")
        self.t_end = float("inf")
        self.latencies = array("d")
        self.send_lag = array("d")
        self.sent = 0
        self.received = 0
        self.errors: dict[str, int] = {}
        self.unexpected = 0  # frames no client should get (e.g. a relay echoing to the sender)

    def received_at(self, now: float, t_send: float, sender: int = 0, receiver: int = 0) -> None:
        if self.t_meas <= t_send < self.t_end:
            self.latencies.append((now - t_send) * 1000.0)
            self.received += 1
            if self.instances > 1:
                self.cross.append(sender % self.instances != receiver % self.instances)

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


def annotation(tag: str, ci: int, k: int, t: float) -> dict[str, Any]:
    """The `annotation.create` data; the peers relay an op frame carrying exactly this."""
    return {
        "id": f"c{ci}-{tag}{k}",
        "kind": "marker",
        "data": {"point": [float(ci), float(k), 12.5]},
        "label": repr(t),
    }


def sender_of(annotation_id: str) -> int:
    return int(annotation_id[1 : annotation_id.index("-")])


def pointer(ci: int, k: int, t: float) -> dict[str, Any]:
    return {"type": "pointer", "point": [t, float(k), float(ci)]}


# ---- clients -------------------------------------------------------------------------------------
class TrinityClient:
    def __init__(self, config: dict[str, Any], room: dict[str, Any], ci: int, window: Window):
        from server.rooms.client import RoomClient

        self.ci = ci
        self.window = window
        self.workload = config["workload"]
        self.tag = f"r{config['run']}-"
        replica = config.get("client_replica", True)
        on_frame = self._on_frame

        class StampingRoomClient(RoomClient):
            def _handle(self, frame: dict[str, Any]) -> None:
                now = monotonic()
                is_event = frame.get("type") == "event"
                if not is_event or frame.get("seq", 0) > self.state.seq:  # not a resume replay
                    on_frame(now, frame)
                if is_event and not replica:
                    # Diagnostic (--no-client-replica): keep the sequence for resume, skip evolve().
                    self.state.seq = max(self.state.seq, frame["seq"])
                    return
                super()._handle(frame)

        # Several instances: client ci's own instance first, the others to fail over to.
        urls = config.get("base_urls") or [config["base_url"]]
        home = ci % len(urls)
        base_url = urls[home:] + urls[:home] if len(urls) > 1 else urls[0]
        # queue_max=1: frames are consumed in _handle; RoomClient's frame queue is never read.
        self.room = StampingRoomClient(base_url, room["id"], room["tokens"][ci], queue_max=1)

    def _on_frame(self, now: float, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "event" and frame.get("kind") == "annotation.created":
            record = frame["data"]["annotation"]
            # The sender gets the event of its own op too; that is not a fan-out delivery.
            sender = sender_of(record["id"])
            if sender != self.ci:
                self.window.received_at(now, float(record["label"]), sender, self.ci)
        elif kind == "pointer":
            point = frame.get("point")
            if point and int(point[2]) != self.ci:
                self.window.received_at(now, point[0], int(point[2]), self.ci)
            elif point:
                self.window.unexpected += 1
        elif kind == "error":
            self.window.error(str(frame.get("code")))

    async def connect(self) -> None:
        await self.room.connect(timeout=60)

    async def send(self, k: int, t: float) -> None:
        if self.workload == "annotations":
            data = annotation(self.tag, self.ci, k, t)
            future = await self.room.submit_op_now("annotation.create", data, op_id=data["id"])
            future.add_done_callback(_consume)
        else:
            await self.room.send(pointer(self.ci, k, t))

    @property
    def reconnects(self) -> int:
        return self.room.reconnects

    async def close(self) -> None:
        await self.room.close()


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # refusals are counted from the error frames


class PeerClient:
    """What the raw and Socket.IO relays carry: the sender's message, unchanged."""

    def __init__(self, config: dict[str, Any], room: dict[str, Any], ci: int, window: Window):
        self.base_url = config["base_url"]
        self.room_id = room["id"]
        self.ci = ci
        self.window = window
        self.workload = config["workload"]
        self.tag = f"r{config['run']}-"
        self.reconnects = 0

    def message(self, k: int, t: float) -> dict[str, Any]:
        if self.workload == "annotations":
            data = annotation(self.tag, self.ci, k, t)
            return {"type": "op", "op_id": data["id"], "kind": "annotation.create", "data": data}
        return pointer(self.ci, k, t)

    def on_message(self, now: float, message: dict[str, Any]) -> None:
        if message.get("type") == "op":
            data = message["data"]
            sender, t_send = sender_of(data["id"]), float(data["label"])
        elif message.get("type") == "pointer":
            point = message["point"]
            sender, t_send = int(point[2]), point[0]
        else:
            self.window.unexpected += 1
            return
        if sender == self.ci:
            self.window.unexpected += 1  # a relay must not echo to the sender
            return
        self.window.received_at(now, t_send)


class RawClient(PeerClient):
    ws: Any = None
    reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        from websockets.asyncio.client import connect

        url = self.base_url.replace("http://", "ws://") + "/" + self.room_id
        self.ws = await connect(url, max_size=2**24, open_timeout=60, compression=None)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                self.on_message(monotonic(), orjson.loads(raw))

    async def send(self, k: int, t: float) -> None:
        await self.ws.send(orjson.dumps(self.message(k, t)).decode())

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)
        if self.reader:
            self.reader.cancel()
            with contextlib.suppress(BaseException):
                await self.reader


class SocketIOClient(PeerClient):
    def __init__(self, config: dict[str, Any], room: dict[str, Any], ci: int, window: Window):
        import socketio

        super().__init__(config, room, ci, window)
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("m", self._on_m)

    async def _on_m(self, data: dict[str, Any]) -> None:
        self.on_message(monotonic(), data)

    async def connect(self) -> None:
        auth = {"room": self.room_id}
        await self.sio.connect(self.base_url, transports=["websocket"], auth=auth, wait_timeout=60)

    async def send(self, k: int, t: float) -> None:
        await self.sio.emit("m", self.message(k, t))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sio.disconnect(), 5)


CLIENTS: dict[str, Any] = {
    "trinity": TrinityClient,
    "raw_websockets": RawClient,
    "python_socketio": SocketIOClient,
}


# ---- the run -------------------------------------------------------------------------------------
async def send_loop(client: Any, window: Window, room_sent: list[int], t0: float, rate: float, phase: float) -> None:
    interval = 1.0 / rate
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


def save(path: str, window: Window) -> None:
    with open(path, "wb") as f:
        window.latencies.tofile(f)
    with open(path + ".lag", "wb") as f:
        window.send_lag.tofile(f)
    if window.instances > 1:
        with open(path + ".cross", "wb") as f:
            window.cross.tofile(f)


async def read_line() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def run(config: dict[str, Any]) -> dict[str, Any]:
    window = Window(len(config.get("base_urls") or [config["base_url"]]))
    rooms = config["rooms"]
    factory = CLIENTS[config["server"]]
    clients = [(factory(config, room, ci, window), r) for r, room in enumerate(rooms) for ci in range(room["clients"])]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect(client: Any) -> None:
        async with gate:
            await client.connect()

    connecting = asyncio.gather(*(connect(c) for c, _ in clients))
    await asyncio.wait_for(connecting, config["connect_timeout_s"])
    # No cyclic GC in the load generator while it measures. One process holds R*C/procs clients
    # (for Trinity as many RoomClient replicas of the rooms); its full collections took up to
    # 280 ms with 50 replicas and would be charged to the server as fan-out latency. Reference
    # counting still frees everything acyclic; the run is short. The servers keep their GC.
    gc.collect()
    gc.freeze()
    gc.disable()
    print("READY", flush=True)
    line = (await asyncio.wait_for(read_line(), 120)).split()
    if len(line) != 2 or line[0] != "GO":
        raise SystemExit(f"expected GO <t0>, got {line!r}")
    t0 = float(line[1])
    window.t_meas = t0 + config["warmup_s"]
    window.t_end = window.t_meas + config["duration_s"]
    rng = random.Random(config.get("seed", 1))
    room_sent = [[0] for _ in rooms]
    interval = 1.0 / config["rate"]
    senders = [
        asyncio.create_task(send_loop(c, window, room_sent[r], t0, config["rate"], rng.random() * interval))
        for c, r in clients
    ]
    limit = config["warmup_s"] + config["duration_s"] + 60
    await asyncio.wait_for(asyncio.gather(*senders), limit)
    expected = sum(n[0] * (room["clients"] - 1) for n, room in zip(room_sent, rooms, strict=True))
    deadline = monotonic() + config["drain_s"]
    while window.received < expected and monotonic() < deadline:  # noqa: ASYNC110 - bounded poll
        await asyncio.sleep(0.02)
    drained_s = monotonic() - window.t_end
    reconnects = sum(c.reconnects for c, _ in clients)
    closing = asyncio.gather(*(c.close() for c, _ in clients), return_exceptions=True)
    await asyncio.wait_for(closing, 30)
    gc.enable()
    await asyncio.to_thread(save, config["samples_path"], window)
    return {
        "sent": window.sent,
        "expected": expected,
        "received": window.received,
        "errors": window.errors,
        "unexpected": window.unexpected,
        "reconnects": reconnects,
        "drained_s": round(drained_s, 3),
    }


def main() -> None:
    config = json.loads(sys.stdin.readline())
    sys.path.insert(0, config["repo"])
    try:
        import uvloop  # the loop uvicorn picks for the servers; faster clients, same for all three
    except ImportError:
        summary = asyncio.run(run(config))
    else:
        summary = uvloop.run(run(config))
    print("RESULT " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
