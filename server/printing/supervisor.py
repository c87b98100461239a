"""The printer supervisor: one per deployment. It keeps a driver per printer (simulator, OctoPrint,
Moonraker), follows their events (printer_events.py), and on every change or every `printing_poll_s`
runs the dispatcher (dispatch.py: failed background jobs, commands, sliced → upload → start, scheduling).

Only one instance may supervise, or two would start two jobs on one printer. Leases:
- SQLite (`make run`, one process): no lease; the only instance supervises.
- PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) on a connection the holder keeps
  open; if the holder dies, PostgreSQL drops its connection and the lock, and another instance takes it
  on its next try (every `printing_lease_s`).
- With TRINITY_REDIS_URL: a Redis key taken with SET NX PX and renewed by a thread (server.core.job_lease);
  a holder that stops renewing loses it within `printing_lease_s`.
Instances without the lease serve the API; what they change reaches the supervisor through the database
(job rows with their `command`, printers' switches), within `printing_poll_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import redis

from server.core.blobs import FilesystemBlobStore
from server.core.db import Database, now_ms
from server.core.jobs import JobRunner
from server.printing import repository
from server.printing.announce import Announcer, PublishFrame
from server.printing.cameras import CameraOffers
from server.printing.config import PrintingConfig
from server.printing.connections import make_driver
from server.printing.dispatch import Dispatcher
from server.printing.drivers.base import PrinterDriver, PrinterEvent
from server.printing.errors import InvalidPrinterSpec
from server.printing.models import PrinterRecord
from server.printing.monitor import PrinterMonitor
from server.printing.printer_events import EventApplier, OutcomeHook

log = logging.getLogger("trinity.printing")
ADVISORY_KEY = 0x7072696E74  # "print": one lock id for the whole fleet
REDIS_LEASE_NAME = "printing-supervisor"  # the key trinity:job:printing-supervisor:lease


class Lease(Protocol):
    async def acquire(self) -> bool: ...

    async def held(self) -> bool: ...

    async def release(self) -> None: ...


class SoleInstance:
    async def acquire(self) -> bool:
        return True

    async def held(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class PostgresLease:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: Any = None

    def _try(self) -> bool:
        conn = self.db.engine.connect()
        got = bool(conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({ADVISORY_KEY})").scalar())
        conn.commit()  # the lock belongs to the session: do not sit idle in a transaction
        if got:
            self._conn = conn
        else:
            conn.close()
        return got

    def _check(self) -> bool:
        try:
            self._conn.exec_driver_sql("SELECT 1").scalar()
            self._conn.commit()
            return True
        except Exception:  # the connection is gone, and the lock with it
            self._close(unlock=False)
            return False

    def _close(self, unlock: bool = True) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            if unlock:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({ADVISORY_KEY})")
                conn.commit()
        with contextlib.suppress(Exception):
            conn.invalidate()  # really closed, not back to the pool still holding a session lock
            conn.close()

    async def acquire(self) -> bool:
        return await asyncio.to_thread(self._try)

    async def held(self) -> bool:
        return self._conn is not None and await asyncio.to_thread(self._check)

    async def release(self) -> None:
        await asyncio.to_thread(self._close)


class RedisLease:
    def __init__(self, redis_url: str, lease_s: float) -> None:
        self.redis_url = redis_url
        self.lease_s = lease_s
        self._lease: Any = None

    def _try(self) -> bool:
        from server.core.job_lease import JobLease

        client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        lease = JobLease(client, REDIS_LEASE_NAME, self.lease_s)
        try:
            got = lease.acquire()
        except redis.RedisError as exc:
            log.warning("printing lease: Redis unavailable: %s", exc)
            return False
        self._lease = lease if got else None
        return got

    async def acquire(self) -> bool:
        return await asyncio.to_thread(self._try)

    async def held(self) -> bool:
        return self._lease is not None and not self._lease.lost.is_set()

    async def release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            await asyncio.to_thread(lease.release)


def make_lease(db: Database, *, redis_url: str, lease_s: float) -> Lease:
    if redis_url:
        return RedisLease(redis_url, lease_s)
    return SoleInstance() if db.is_sqlite else PostgresLease(db)


def _fingerprint(row: PrinterRecord) -> str:
    """The row's fields a driver is built from: a change restarts that printer's monitor."""
    fields = [row.driver, row.connection, *repository.setup_key(row), sorted(row.tags)]
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


class PrintSupervisor:
    def __init__(
        self,
        *,
        db: Database,
        jobs: JobRunner,
        blobs: FilesystemBlobStore,
        publish: PublishFrame,
        config: PrintingConfig,
        data_dir: Path,
        redis_url: str = "",
        on_outcome: OutcomeHook | None = None,
        video_of: Callable[[], Any] = lambda: None,
    ) -> None:
        self.db = db
        self.config = config
        self.data_dir = data_dir
        self.lease = make_lease(db, redis_url=redis_url, lease_s=config.printing_lease_s)
        self.announcer = Announcer(db, publish)
        self.events = EventApplier(
            db,
            self.announcer,
            progress_write_s=config.printing_progress_write_s,
            nudge=self.nudge,
            on_outcome=on_outcome,
        )
        self.dispatcher = Dispatcher(
            db, jobs, blobs, self.announcer, driver_of=self.driver, spool_dir=data_dir / "printing" / "uploads"
        )
        self.cameras = CameraOffers(video_of, self.driver)
        self.monitors: dict[str, PrinterMonitor] = {}
        self.leader = False
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ---

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.config.printing_supervisor:
            self._task = asyncio.create_task(self._run(), name="printing-supervisor")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._step_down()

    def nudge(self) -> None:
        """Something changed (a job queued, a bed cleared): look now rather than at the next poll.
        Safe from any thread (the API's sync handlers run in a thread pool)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    def driver(self, printer_id: str) -> PrinterDriver | None:
        """This instance's connected driver of a printer (None: not connected, or not the supervisor)."""
        monitor = self.monitors.get(printer_id)
        return monitor.driver if monitor is not None and monitor.connected else None

    async def camera_jpeg(self, printer_id: str) -> bytes | None:
        """The simulator's synthetic camera picture as JPEG (None: no such camera here)."""
        snapshot: Callable[[], bytes] | None = getattr(self.driver(printer_id), "snapshot_png", None)
        if snapshot is None:
            return None

        def to_jpeg() -> bytes:  # drawing a G-code layer takes a while: off the event loop
            from PIL import Image

            out = io.BytesIO()
            Image.open(io.BytesIO(snapshot())).convert("RGB").save(out, format="JPEG", quality=80)
            return out.getvalue()

        return await asyncio.to_thread(to_jpeg)

    async def _run(self) -> None:
        while True:
            try:
                if not self.leader:
                    self.leader = await self.lease.acquire()
                    if not self.leader:
                        await asyncio.sleep(self.config.printing_lease_s)
                        continue
                    log.info("this instance supervises the printers")
                    await self.dispatcher.recover()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.config.printing_poll_s)
                self._wake.clear()
                if not await self.lease.held():
                    log.warning("printing lease lost: another instance supervises now")
                    await self._step_down()
                    continue
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database or bus hiccup: log it, and try again on the next tick
                log.exception("printing supervisor tick failed")
                await asyncio.sleep(self.config.printing_poll_s)

    async def _step_down(self) -> None:
        self.leader = False
        for monitor in list(self.monitors.values()):
            await monitor.close()
        self.monitors.clear()
        await self.dispatcher.close()
        await self.lease.release()

    # --- one tick ---

    async def tick(self) -> None:
        started = now_ms()
        every: list[PrinterRecord] = await self.db.run_read(self._printers)
        rows = [row for row in every if row.retired_at_ms is None]
        await self.announcer.refresh_rooms({row.site_id for row in every} | await self.db.run_read(self._job_sites))
        await self._sync_monitors(rows)
        await self._retired([row for row in every if row.retired_at_ms is not None])
        self.cameras.sync(self.announcer.rooms, rows)
        await self._shown_states(rows)
        await self.dispatcher.run_once(rows)
        await self.announcer.changed_jobs(started)

    def _printers(self) -> list[PrinterRecord]:
        with self.db.session() as session:
            return repository.printers(session, include_retired=True)

    def _job_sites(self) -> set[str]:
        with self.db.session() as session:
            return {job.site_id for job in repository.jobs(session, states=repository.OPEN_STATES)}

    async def _sync_monitors(self, rows: list[PrinterRecord]) -> None:
        wanted = {row.id: row for row in rows}
        for printer_id, monitor in list(self.monitors.items()):
            row = wanted.get(printer_id)
            if row is None or monitor.fingerprint != _fingerprint(row):
                await monitor.close()
                del self.monitors[printer_id]
        for row in rows:
            if row.id in self.monitors:
                continue
            try:
                spec = repository.spec_of(row)
            except InvalidPrinterSpec as exc:
                log.warning("printer %s not monitored: %s", row.id, exc)
                continue
            build = functools.partial(
                make_driver,
                spec,
                row.driver,
                row.connection,
                policy=self.config.secret_policy,
                sim_dir=self.data_dir / "printing" / "simulators" / row.id,
            )
            monitor = PrinterMonitor(
                row.id,
                build,
                self._on_event,
                fingerprint=_fingerprint(row),
                retry_max_s=self.config.printing_connect_retry_max_s,
            )
            self.monitors[row.id] = monitor
            monitor.start()

    async def _retired(self, rows: list[PrinterRecord]) -> None:
        """Printers retired through the API: their monitors are closed by now (`_sync_monitors`), so the
        rooms that were shown them hear last that they left, and their cameras go."""
        for row in rows:
            self.cameras.withdraw(row.id)
            await self.announcer.retired(row)

    async def _on_event(self, printer_id: str, event: PrinterEvent) -> None:
        monitor = self.monitors.get(printer_id)
        driver = monitor.driver if monitor is not None else None
        cameras = driver.camera_urls() if driver is not None else []
        await self.events.apply(printer_id, event, cameras)

    async def _shown_states(self, rows: list[PrinterRecord]) -> None:
        """Switches set through the API (maintenance, bed cleared, queue resumed) change what is shown."""
        for row in rows:
            shown = repository.shown_state(row).value
            if shown != row.state:
                await self.db.run_write(self._store_state, row.id, shown)
                row.state = shown
            await self.announcer.printer(row, force=False)

    def _store_state(self, printer_id: str, state: str) -> None:
        with self.db.session() as session:
            repository.set_printer(session, printer_id, state=state)
