"""One client's connection as the hub sees it: a bounded ordered queue plus coalesced latest-only slots.

Sequenced events and replies must all arrive, in order: they go to the ordered queue. A client that
takes nothing from it for `stall_s` while frames wait, or lets it grow past `queue_max`, is dropped and
resumes later from its last sequence. Judging by progress rather than by length alone lets a healthy
client absorb a burst (a batch of events fans out at once) while a dead one is found quickly. Pointer and camera
updates only matter as their latest value: each key holds one frame, overwritten by newer ones, so a
slow client gets the latest, never a backlog.

Writing: on uvicorn with the `trinity.direct` extension (server/core/ws_direct.py) queued frames are
written synchronously by `PendingWrites.flush`, at the end of the hot path that queued them (or by a
callback scheduled once for all connections): no task wake-up per frame. The sender task writes only
what cannot go out that way: over a full socket buffer (it awaits the drain), or without the extension.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from server.rooms.protocol import CLOSE_SLOW_CONSUMER
from server.rooms.state import Actor, RoomRole

_ids = itertools.count(1)


class PendingWrites:
    """Connections with frames to write directly, written together by `flush`."""

    def __init__(self) -> None:
        self._dirty: dict[int, Connection] = {}
        self._scheduled = False

    def mark(self, conn: Connection) -> None:
        self._dirty[conn.id] = conn
        if not self._scheduled:
            # Once the loop's current pass is done. The group commit flushes itself right after its
            # callbacks (`after_commit`), so a commit's frames do not wait for the next pass.
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        while self._dirty:
            dirty, self._dirty = self._dirty, {}
            for conn in dirty.values():
                conn.write_queued()


class Connection:
    def __init__(
        self,
        send_text: Callable[[str], Awaitable[None]],
        close: Callable[[int, str], Awaitable[None]],
        *,
        user_id: str,
        display_name: str,
        site_id: str,
        role: RoomRole,
        queue_max: int,
        stall_s: float = 10.0,
        on_slow: Callable[[], None] | None = None,
        batch_max_bytes: int = 0,
        direct: dict[str, Any] | None = None,
        writes: PendingWrites | None = None,
    ) -> None:
        self.id = next(_ids)
        self.user_id = user_id
        self.display_name = display_name
        self.site_id = site_id
        self.role = role
        self._send_text = send_text
        self._close = close
        self._queue_max = queue_max
        self._stall_s = stall_s
        self._on_slow = on_slow
        self._batch_max_bytes = batch_max_bytes
        self._progress_s = time.monotonic()
        self._ordered: deque[str] = deque()
        self._latest: dict[Any, str] = {}
        self._wake = asyncio.Event()
        # Direct writes (the `trinity.direct` extension): both or neither.
        self._can_send: Callable[[], bool] | None = direct["can_send"] if direct and writes else None
        self._send_now: Callable[[str], None] | None = direct["send"] if direct and writes else None
        self._writes = writes
        self._writing = False  # the sender task is between taking frames and their write completing
        self.closed = False
        self.dropped = asyncio.Event()  # set with `closed`, for whoever waits on the socket
        self.close_reason: tuple[int, str] | None = None
        self.last_pointer_s = 0.0
        self.last_camera_s = 0.0

    @property
    def actor(self) -> Actor:
        return Actor(self.user_id, self.role)

    def push(self, text: str) -> bool:
        """Queue an ordered frame; False (and the connection is being dropped) when over the bound."""
        if self.closed:
            return False
        if self._ordered:
            if len(self._ordered) >= self._queue_max or time.monotonic() - self._progress_s > self._stall_s:
                self.drop(CLOSE_SLOW_CONSUMER, "slow consumer: resume from your last sequence")
                if self._on_slow:
                    self._on_slow()
                return False
        else:
            self._progress_s = time.monotonic()
        self._ordered.append(text)
        self._ready()
        return True

    def push_latest(self, key: Any, text: str) -> None:
        if self.closed:
            return
        self._latest[key] = text
        self._ready()

    def _ready(self) -> None:
        if self._writes is not None and self._send_now is not None and not self._writing:
            self._writes.mark(self)
        else:
            self._wake.set()

    def write_queued(self) -> None:
        """Write what is queued now, ordered frames first; what cannot go out now is left to the sender task."""
        if self.closed or self._writing or self._send_now is None or self._can_send is None:
            self._wake.set()
            return
        try:
            while self._ordered and self._can_send():
                self._send_now(self._take(self._next_ordered, self._pop_ordered))
                self._progress_s = time.monotonic()
            while self._latest and not self._ordered and self._can_send():
                self._send_now(self._take(self._next_latest, self._pop_latest))
        except Exception:
            self.drop(1011, "write failed")
            return
        if self._ordered or self._latest:
            self._wake.set()  # the socket's buffer is full: the sender task waits for it to drain

    def drop(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = (code, reason)
            self.dropped.set()
            self._wake.set()

    @property
    def direct(self) -> bool:
        """Frames are written straight to the socket when it can take them."""
        return self._send_now is not None

    @property
    def backlog(self) -> int:
        return len(self._ordered)

    def _next_ordered(self) -> str | None:
        return self._ordered[0] if self._ordered else None

    def _pop_ordered(self) -> str:
        return self._ordered.popleft()

    def _next_latest(self) -> str | None:
        return next(iter(self._latest.values()), None)

    def _pop_latest(self) -> str:
        return self._latest.pop(next(iter(self._latest)))

    def _take(self, peek: Callable[[], str | None], pop: Callable[[], str]) -> str:
        """The next frame, and for a client that asked for batches the ones after it that fit, joined by
        newlines into one message of at most the batch size (one frame alone may be larger). A message
        per frame cost a write and a wake-up per frame."""
        parts = [pop()]
        size = len(parts[0])
        while (text := peek()) is not None and size + 1 + len(text) <= self._batch_max_bytes:
            parts.append(pop())
            size += 1 + len(text)
        return "\n".join(parts)

    async def run_sender(self) -> None:
        """Write queued frames to the socket until the connection is dropped or the socket fails."""
        try:
            while not self.closed:
                await self._wake.wait()
                self._wake.clear()
                self._writing = True
                while self._ordered and not self.closed:
                    await self._send_text(self._take(self._next_ordered, self._pop_ordered))
                    self._progress_s = time.monotonic()
                while self._latest and not self.closed:
                    await self._send_text(self._take(self._next_latest, self._pop_latest))
                    if self._ordered:
                        break  # ordered frames first, then the rest of the latest slots
                self._writing = False
                if self._ordered or self._latest:
                    self._wake.set()
        except Exception:
            self.closed = True
            self.dropped.set()
        if self.close_reason:
            with contextlib.suppress(Exception):
                await self._close(*self.close_reason)
