"""What the OctoPrint and Moonraker drivers share: timeouts, HTTP error mapping, the fan-out of live events
to every `events()` reader, and a push channel (a websocket) that reconnects with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import random
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, WebSocketException

from server.printing.drivers.base import PrinterEvent, PrinterRejected, PrinterUnreachable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostTimeouts:
    request_s: float = 10.0  # one REST call
    upload_s: float = 300.0  # a large G-code file over a slow shop-floor link
    printer_link_s: float = 30.0  # OctoPrint: the serial link until the printer reports Operational
    ping_interval_s: float = 5.0  # push channel keepalive
    ping_timeout_s: float = 10.0  # no pong within this: the host stopped answering
    backoff_initial_s: float = 0.5  # first reconnect delay, doubled per failure
    backoff_max_s: float = 15.0


def backoff_delays(timeouts: HostTimeouts) -> Iterator[float]:
    """Doubling delays with jitter, so a fleet of drivers does not hammer a restarted host in lockstep."""
    delay = timeouts.backoff_initial_s
    while True:
        yield delay * random.uniform(0.8, 1.2)
        delay = min(delay * 2, timeouts.backoff_max_s)


_TAGS = re.compile(r"<[^>]+>")


def rejection_reason(response: httpx.Response) -> str:
    """The host's own words: OctoPrint's {"error": "..."} or HTML page, Moonraker's {"error": {"message"}}."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
    text = " ".join(html.unescape(_TAGS.sub(" ", response.text)).split())
    return text[:300] or response.reason_phrase


async def call(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One REST call: no answer → PrinterUnreachable, an answer other than 2xx → PrinterRejected."""
    try:
        response = await client.request(method, path, **kwargs)
    except httpx.TransportError as exc:  # refused, reset, timed out: the host does not answer
        raise PrinterUnreachable(f"{client.base_url} does not answer {method} {path}: {exc!r}") from exc
    if not response.is_success:
        reason = rejection_reason(response)
        raise PrinterRejected(f"{reason} (HTTP {response.status_code} on {method} {path})")
    return response


class EventSubscription:
    """One reader's queue of events. Registered when created, so nothing published after `events()`
    returns is missed, even before the first `async for` step."""

    def __init__(self, hub: EventHub, backlog: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[PrinterEvent | None] = asyncio.Queue(backlog)

    def _put(self, event: PrinterEvent | None) -> None:
        if self._queue.full():  # a stalled reader loses its oldest events, never blocks the driver
            self._queue.get_nowait()
        self._queue.put_nowait(event)

    def __aiter__(self) -> EventSubscription:
        return self

    async def __anext__(self) -> PrinterEvent:
        event = await self._queue.get()
        if event is None:
            self._hub.unsubscribe(self)
            raise StopAsyncIteration
        return event

    def close(self) -> None:
        self._hub.unsubscribe(self)
        self._put(None)


class EventHub:
    """Fans each event out to every open subscription; close() ends them all."""

    def __init__(self, backlog: int = 1000) -> None:
        self._backlog = backlog
        self._subscriptions: set[EventSubscription] = set()
        self._closed = False

    def subscribe(self) -> EventSubscription:
        subscription = EventSubscription(self, self._backlog)
        if self._closed:
            subscription.close()
        else:
            self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: EventSubscription) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, event: PrinterEvent) -> None:
        for subscription in list(self._subscriptions):
            subscription._put(event)

    def close(self) -> None:
        self._closed = True
        for subscription in list(self._subscriptions):
            subscription.close()


OpenSession = Callable[[], Awaitable[ClientConnection]]
OnMessage = Callable[[ClientConnection, Any], Awaitable[None]]


class PushLoop:
    """Keeps one websocket session to a host open.

    `start()` opens the first session (its errors reach the caller); then a task reads messages until the
    session drops, calls `on_down(reason)` once per outage, reopens with backoff and calls `on_up()` (in its
    own task, so it may use the new session) each time the host is back.
    """

    def __init__(
        self,
        open_session: OpenSession,
        on_message: OnMessage,
        on_down: Callable[[str], None],
        on_up: Callable[[], Awaitable[None]],
        timeouts: HostTimeouts,
    ) -> None:
        self._open_session = open_session
        self._on_message = on_message
        self._on_down = on_down
        self._on_up = on_up
        self._timeouts = timeouts
        self._task: asyncio.Task[None] | None = None
        self._helpers: set[asyncio.Task[None]] = set()
        self.ws: ClientConnection | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    async def start(self) -> None:
        self.ws = await self._open_session()
        self._task = asyncio.create_task(self._run(self.ws), name="printer-push")

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._helpers) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None
        if self.ws is not None:
            await self.ws.close()
            self.ws = None

    async def _run(self, ws: ClientConnection) -> None:
        while True:
            reason = await self._read(ws)
            self.ws = None
            self._on_down(reason)
            ws = await self._reopen()
            self.ws = ws
            helper = asyncio.create_task(self._safe_on_up(), name="printer-push-up")
            self._helpers.add(helper)
            helper.add_done_callback(self._helpers.discard)

    async def _read(self, ws: ClientConnection) -> str:
        try:
            async for raw in ws:
                try:
                    await self._on_message(ws, raw)
                except (PrinterUnreachable, PrinterRejected, ConnectionClosed) as exc:
                    log.warning("push message handling failed: %s", exc)
                except Exception:  # one odd message must not end monitoring
                    log.exception("push message handling failed")
        except ConnectionClosed as exc:
            return f"push channel lost: {exc}"
        return f"push channel closed by the host ({ws.close_code} {ws.close_reason or ''})".strip()

    async def _reopen(self) -> ClientConnection:
        for delay in backoff_delays(self._timeouts):
            await asyncio.sleep(delay)
            try:
                return await self._open_session()
            except (PrinterUnreachable, PrinterRejected, OSError, WebSocketException, TimeoutError) as exc:
                log.info("push channel still down: %s", exc)
        raise AssertionError("backoff_delays never ends")

    async def _safe_on_up(self) -> None:
        try:
            await self._on_up()
        except (PrinterUnreachable, PrinterRejected) as exc:
            log.warning("host back but not ready: %s", exc)
