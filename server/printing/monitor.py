"""One printer's driver, kept connected and listened to, for the supervisor.

The monitor builds the driver, connects it (retrying with backoff while the host is down or its key
is missing) and hands every event to the supervisor's `on_event`. A host that cannot be reached at
start-up is reported like one lost later, a `disconnected` event with source "host", so the printer
shows offline with the reason. After the first connect the drivers reconnect by themselves (OctoPrint's
and Moonraker's push loops, the simulator's outage) and say so with `connected` events.
Whatever a host or a handler does wrong is logged; the monitor keeps going.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

from server.printing.connections import SecretUnavailable
from server.printing.drivers.base import (
    PrinterDriver,
    PrinterEvent,
    PrinterRejected,
    PrinterState,
    PrinterStatus,
    PrinterUnreachable,
)

log = logging.getLogger("trinity.printing")

OnEvent = Callable[[str, PrinterEvent], Awaitable[None]]
CONNECT_ERRORS = (PrinterUnreachable, PrinterRejected, SecretUnavailable, OSError, TimeoutError)


class PrinterMonitor:
    def __init__(
        self,
        printer_id: str,
        make_driver: Callable[[], PrinterDriver],
        on_event: OnEvent,
        *,
        fingerprint: str,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 30.0,
    ) -> None:
        self.printer_id = printer_id
        self.fingerprint = fingerprint  # the row's driver settings this monitor was built from
        self._make_driver = make_driver
        self._on_event = on_event
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self.driver: PrinterDriver | None = None
        self.connected = False  # the first connect succeeded (the driver follows outages itself after that)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"printer-{self.printer_id}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._close_driver()

    async def _close_driver(self) -> None:
        driver, self.driver, self.connected = self.driver, None, False
        if driver is not None:
            with contextlib.suppress(Exception):
                await driver.close()

    async def _run(self) -> None:
        delay = self._retry_initial_s
        while True:
            try:
                driver = self._make_driver()
            except SecretUnavailable as exc:
                await self._tell_down(f"cannot connect: {exc}")
            else:
                self.driver = driver
                events = driver.events()  # subscribed before connect: nothing said while connecting is lost
                try:
                    await driver.connect()
                    status = await driver.status()
                except CONNECT_ERRORS as exc:
                    await self._tell_down(f"cannot connect: {exc}")
                    await self._close_driver()
                else:
                    self.connected, delay = True, self._retry_initial_s
                    await self._handle(PrinterEvent("connected", status, {"source": "host", "first": True}))
                    async for event in events:
                        await self._handle(event)
                    return  # the driver was closed
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # jitter: a restarted host is not stormed
            delay = min(delay * 2, self._retry_max_s)

    async def _tell_down(self, reason: str) -> None:
        status = PrinterStatus(PrinterState.OFFLINE, message=reason)
        await self._handle(PrinterEvent("disconnected", status, {"source": "host", "reason": reason}))

    async def _handle(self, event: PrinterEvent) -> None:
        try:
            await self._on_event(self.printer_id, event)
        except asyncio.CancelledError:
            raise
        except Exception:  # one bad event (or a database hiccup) must not end monitoring
            log.exception("handling a printer event failed", extra={"printer": self.printer_id, "kind": event.kind})
