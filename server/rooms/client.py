"""The Python client for a room: connect, send ops and await their ack, iterate events, and on a dropped
connection reconnect, resume from the last seen sequence, and re-send ops that were never acknowledged.

Used by the tests, the benchmarks and tools. Keeps a local replica of the room state by feeding events
through the same pure state machine the server uses.

    async with RoomClient("http://127.0.0.1:8000", room_id, token) as room:
        seq = await room.send_op("annotation.create", {"id": "m1", "kind": "marker", "data": {...}})
        async for frame in room.frames(): ...
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from server.rooms.protocol import PROTOCOL_VERSION, SUBPROTOCOL
from server.rooms.ratelimit import TokenBucket
from server.rooms.state import RoomState, evolve

FATAL_CLOSE_CODES = {4001, 4003, 4004, 4009, 4010, 4012}


class RoomError(Exception):
    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(f"{frame.get('code')}: {frame.get('message')}")
        self.code = frame.get("code")
        self.frame = frame


class RoomClosed(Exception):
    """The server refused or ended the session for good (auth, membership, room full)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code}: {reason}")
        self.code = code


def state_from_snapshot(snapshot: dict[str, Any]) -> RoomState:
    state = RoomState(
        seq=snapshot["seq"], archived=snapshot.get("archived", False), presenter=snapshot.get("presenter")
    )
    state.annotations = {a["id"]: a for a in snapshot.get("annotations", [])}
    state.models = {m["id"]: m for m in snapshot.get("models", [])}
    state.chat = list(snapshot.get("chat", []))
    state.plans = {p["plan_id"]: p for p in snapshot.get("plans", [])}
    state.snapshots = list(snapshot.get("snapshots", []))
    return state


class RoomClient:
    def __init__(
        self,
        base_url: str | list[str],
        room_id: str,
        token: str | Callable[[], str],
        *,
        reconnect: bool = True,
        max_backoff_s: float = 2.0,
        queue_max: int = 100_000,
    ) -> None:
        # Several base URLs (instances): a lost connection moves on to the next one.
        bases = [base_url] if isinstance(base_url, str) else list(base_url)
        self.urls = [
            f"{b.replace('https://', 'wss://').replace('http://', 'ws://').rstrip('/')}/ws/rooms/{room_id}"
            for b in bases
        ]
        self._url_index = 0
        self.room_id = room_id
        self._token = token
        self.reconnect = reconnect
        self.max_backoff_s = max_backoff_s
        self.state = RoomState()
        self.epoch: str | None = None
        self.me: dict[str, Any] = {}
        self.presence: dict[str, dict[str, Any]] = {}
        self.camera: dict[str, Any] | None = None
        self.reconnects = 0
        self._ws: ClientConnection | None = None
        self._unacked: OrderedDict[str, tuple[dict[str, Any], asyncio.Future[int]]] = OrderedDict()
        self._frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue(queue_max)
        self._joined = asyncio.Event()
        self._closed = False
        self._runner: asyncio.Task[None] | None = None
        self._fatal: BaseException | None = None
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._bucket = TokenBucket(50.0, 50)  # replaced by the server's announced limits on join
        self._sent_at: dict[str, float] = {}
        self._pacer_holds = False  # the pacer took an op from the outbox and has not sent it yet
        self.retransmit_s = 5.0
        self._op_counter = itertools.count(1)
        self._op_prefix = uuid.uuid4().hex[:10]

    # ---- public API -----------------------------------------------------------------------------
    async def __aenter__(self) -> RoomClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        return self.urls[self._url_index]

    @property
    def seq(self) -> int:
        return self.state.seq

    @property
    def connected(self) -> bool:
        return self._joined.is_set()

    async def connect(self, timeout: float = 10.0) -> None:
        self._runner = asyncio.create_task(self._run())
        await self.wait_joined(timeout)

    async def wait_joined(self, timeout: float = 10.0) -> None:
        waiter = asyncio.create_task(self._joined.wait())
        await asyncio.wait(
            {waiter, self._runner} if self._runner else {waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        if self._fatal:
            raise self._fatal
        if not self._joined.is_set():
            raise TimeoutError("not joined in time")

    def new_op_id(self) -> str:
        return f"{self._op_prefix}-{next(self._op_counter)}"

    async def send_op(
        self, kind: str, data: dict[str, Any] | None = None, *, op_id: str | None = None, timeout: float | None = 30.0
    ) -> int:
        """Send a sequenced op; return its sequence number once the server has stored it."""
        future = self.submit_op(kind, data, op_id=op_id)
        return await asyncio.wait_for(asyncio.shield(future), timeout)

    def submit_op(
        self, kind: str, data: dict[str, Any] | None = None, *, op_id: str | None = None
    ) -> asyncio.Future[int]:
        """Queue an op without waiting; it is (re)sent until acknowledged, across reconnects."""
        op_id, _, future = self._register(kind, data, op_id)
        if self._joined.is_set():
            self._enqueue(op_id)
        return future

    def _register(
        self, kind: str, data: dict[str, Any] | None, op_id: str | None
    ) -> tuple[str, dict[str, Any], asyncio.Future[int]]:
        if self._fatal:
            raise self._fatal
        op_id = op_id or self.new_op_id()
        frame = {"type": "op", "op_id": op_id, "kind": kind, "data": data or {}}
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._unacked[op_id] = (frame, future)
        return op_id, frame, future

    async def submit_op_now(
        self, kind: str, data: dict[str, Any] | None = None, *, op_id: str | None = None
    ) -> asyncio.Future[int]:
        """`submit_op`, but written to the socket here when nothing is queued before it and the rate
        allows, instead of by the pacer task on the loop's next pass. Order is the order of the calls."""
        op_id, frame, future = self._register(kind, data, op_id)
        ws = self._ws
        if not self._joined.is_set():
            return future  # queued on join, with every other unacknowledged op
        if ws is None or not self._outbox.empty() or self._pacer_holds or not self._bucket.take():
            self._enqueue(op_id)
            return future
        self._sent_at[op_id] = asyncio.get_running_loop().time()
        with contextlib.suppress(ConnectionClosed):
            await ws.send(orjson.dumps(frame).decode())  # lost with the connection: re-sent on join
        return future

    async def send(self, frame: dict[str, Any]) -> None:
        """Send an ephemeral frame (pointer, camera, presence, ping) if connected and within the rate
        limit; ephemeral frames are never queued: a newer one supersedes them anyway."""
        if self._ws is not None and self._joined.is_set() and self._bucket.take():
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send(orjson.dumps(frame).decode())

    async def send_raw(self, text: str | bytes) -> None:
        """Tests: send bytes as they are (malformed frames)."""
        assert self._ws is not None
        await self._ws.send(text)

    async def next_frame(self, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self._frames.get(), timeout)

    async def frames(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            yield await self._frames.get()

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        async def scan() -> dict[str, Any]:
            while True:
                frame = await self._frames.get()
                if predicate(frame):
                    return frame

        return await asyncio.wait_for(scan(), timeout)

    async def wait_seq(self, seq: int, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while self.state.seq < seq:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"at seq {self.state.seq}, waiting for {seq}")
            await asyncio.sleep(0.01)

    def drain(self) -> list[dict[str, Any]]:
        out = []
        while not self._frames.empty():
            out.append(self._frames.get_nowait())
        return out

    @property
    def pending_ops(self) -> int:
        return len(self._unacked)

    def force_disconnect(self) -> None:
        """Tests: drop the TCP connection abruptly, as a network failure would."""
        if self._ws is not None and self._ws.transport is not None:
            self._ws.transport.abort()

    async def close(self) -> None:
        self._closed = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._runner:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner

    # ---- internals ------------------------------------------------------------------------------
    def _token_value(self) -> str:
        return self._token() if callable(self._token) else self._token

    def _drop_queued(self) -> None:
        while not self._outbox.empty():  # in place: the pacer may be waiting on this queue
            self._outbox.get_nowait()

    def _enqueue(self, op_id: str) -> None:
        entry = self._unacked.get(op_id)
        if entry is None:
            self._sent_at.pop(op_id, None)
        else:
            self._sent_at[op_id] = asyncio.get_running_loop().time()
            self._outbox.put_nowait(orjson.dumps(entry[0]).decode())

    async def _pace(self, ws: ClientConnection) -> None:
        """Send queued ops within the server's announced rate."""
        await self._joined.wait()  # nothing goes out before welcome/resumed re-queued every unacked op
        while True:
            text = await self._outbox.get()  # no wait_for here: a timed-out get() can lose its item
            self._pacer_holds = True
            try:
                while not self._bucket.take():  # noqa: ASYNC110 - waiting for time, not for an event
                    await asyncio.sleep(1.0 / max(self._bucket.rate, 1.0))
                await ws.send(text)
            finally:
                self._pacer_holds = False

    async def _retransmit(self) -> None:
        """Re-send an op that got neither an ack nor an error in time (e.g. a frame the server
        refused before it could read its op_id). The server de-duplicates by op_id."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            if self._outbox.empty():
                for op_id in [o for o, at in self._sent_at.items() if loop.time() - at > self.retransmit_s]:
                    self._enqueue(op_id)

    async def _run(self) -> None:
        backoff = 0.05
        while not self._closed:
            try:
                async with connect(self.url, subprotocols=[SUBPROTOCOL], max_size=2**24, open_timeout=10) as ws:  # type: ignore[list-item]
                    self._ws = ws
                    hello: dict[str, Any] = {
                        "type": "hello",
                        "protocol": PROTOCOL_VERSION,
                        "token": self._token_value(),
                        "batch": True,  # several frames per message, newline-separated (protocol §1)
                    }
                    if self.epoch is not None:
                        hello["resume"] = {"epoch": self.epoch, "seq": self.state.seq}
                    await ws.send(orjson.dumps(hello).decode())
                    backoff = 0.05
                    self._drop_queued()  # leftovers of the last connection: re-queued, in order, on join
                    helpers = [asyncio.create_task(self._pace(ws)), asyncio.create_task(self._retransmit())]
                    try:
                        async for raw in ws:
                            for text in raw.split("\n" if isinstance(raw, str) else b"\n"):  # type: ignore[arg-type]
                                self._handle(orjson.loads(text))
                    finally:
                        for task in helpers:
                            task.cancel()
            except (ConnectionClosed, OSError, TimeoutError) as exc:
                code = getattr(getattr(exc, "rcvd", None), "code", None)
                if code in FATAL_CLOSE_CODES:
                    self._fail(RoomClosed(code, getattr(exc.rcvd, "reason", "")))  # type: ignore[union-attr]
                    return
            finally:
                self._ws = None
                self._joined.clear()
            if self._closed or not self.reconnect:
                if not self._closed:
                    self._fail(RoomClosed(None, "connection lost"))
                return
            self.reconnects += 1
            self._url_index = (self._url_index + 1) % len(self.urls)
            await asyncio.sleep(backoff)
            backoff = min(self.max_backoff_s, backoff * 2)

    def _fail(self, exc: BaseException) -> None:
        self._fatal = exc
        for _, future in self._unacked.values():
            if not future.done():
                future.set_exception(exc)
        self._unacked.clear()

    def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "event":
            seq = frame["seq"]
            if seq <= self.state.seq:
                return  # already applied (possible across a resume)
            evolve(self.state, frame, track_history=False)
        elif kind == "ack":
            entry = self._unacked.pop(frame["op_id"], None)
            self._sent_at.pop(frame["op_id"], None)
            if entry and not entry[1].done():
                entry[1].set_result(frame["seq"])
        elif kind == "error" and frame.get("op_id") in self._unacked:
            _, future = self._unacked.pop(frame["op_id"])
            self._sent_at.pop(frame["op_id"], None)
            if not future.done():
                future.set_exception(RoomError(frame))
        elif kind == "welcome":
            self.state = state_from_snapshot(frame["snapshot"])
            self._joined_as(frame)
            self.presence = {p["user"]: p for p in frame["snapshot"].get("presence", [])}
            self.camera = frame["snapshot"].get("camera")
        elif kind == "resumed":
            self._joined_as(frame)
            self.presence = {p["user"]: p for p in frame.get("presence", [])}
            self.camera = frame.get("camera")
        elif kind == "presence":
            if frame["status"] == "offline":
                self.presence.pop(frame["user"], None)
            else:
                self.presence[frame["user"]] = frame
        elif kind == "camera":
            self.camera = frame
        if not self._frames.full():
            self._frames.put_nowait(frame)

    def _joined_as(self, frame: dict[str, Any]) -> None:
        self.epoch = frame["epoch"]
        self.me = frame["you"]
        limits = frame.get("limits") or {}
        # Stay under the server's limit so a burst of re-sent ops is paced, not refused.
        rate = float(limits.get("rate_per_s", 50.0)) * 0.8
        self._bucket = TokenBucket(rate, max(1, int(limits.get("burst", 50)) // 2))
        self._joined.set()
        # Everything unacknowledged is queued again, in submission order, so nothing overtakes an earlier op.
        self._drop_queued()
        for op_id in list(self._unacked):
            self._enqueue(op_id)  # resend everything never acknowledged; the server de-duplicates
