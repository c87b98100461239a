"""Telling the maker rooms: every `printer` and `print_job` frame goes, as an ephemeral server frame
(`Hubs.publish`), into each maker room (rooms of kind `maker`) of the printer's site, on every instance.

The list of maker rooms per site is re-read on every supervisor tick, so a room created a moment ago is
told from the next tick on. Print job rows changed by someone else (a worker finishing preflight, an
API call on another instance) are found by their `updated_at_ms` and announced once per version.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from server.core.db import Database, now_ms
from server.printing import repository
from server.printing.frames import print_job_frame, printer_frame
from server.printing.models import PrinterRecord, PrintJob

log = logging.getLogger("trinity.printing")

PublishFrame = Callable[[str, dict[str, Any]], Awaitable[None]]  # Hubs.publish(room_id, frame)
RETIRED = "retired"  # the last state a maker room hears of a printer that left the fleet
RESCAN_WINDOW_MS = 15_000  # clocks of instances and the ms resolution: look back a little further


class Announcer:
    def __init__(self, db: Database, publish: PublishFrame) -> None:
        self.db = db
        self._publish = publish
        self.rooms: dict[str, list[str]] = {}  # site -> its maker rooms
        self._told: dict[str, int] = {}  # print job id -> the updated_at_ms last announced
        self._printers_told: dict[str, tuple[Any, ...]] = {}
        self._latest_status: dict[str, dict[str, Any]] = {}
        self._live: dict[str, tuple[float, int | None]] = {}  # print job -> the host's latest progress
        self._scan_from_ms = now_ms()  # rows changed before this instance started were told by another

    async def refresh_rooms(self, sites: set[str]) -> None:
        def load() -> dict[str, list[str]]:
            with self.db.session() as session:
                return {site: repository.maker_rooms(session, site) for site in sites}

        self.rooms = await self.db.run_read(load)

    async def to_site(self, site_id: str, frame: dict[str, Any]) -> None:
        for room_id in self.rooms.get(site_id, ()):
            try:
                await self._publish(room_id, frame)
            except Exception:  # a bus hiccup loses one ephemeral frame, never the supervisor
                log.warning("could not publish a %s frame to room %s", frame.get("type"), room_id, exc_info=True)

    async def printer(self, row: PrinterRecord, *, force: bool = True) -> None:
        """The printer as `row` has it. `force=False` (the periodic look at stored rows): only when its state,
        job or switches changed since last told, with the freshest status this instance has heard."""
        shown = repository.shown_state(row).value
        message = row.state_message or str(row.status.get("message") or "")
        key = (shown, row.current_job_id, row.queue_paused, row.maintenance, message)
        status = row.status
        if force:
            self._latest_status[row.id] = status
        elif self._printers_told.get(row.id) == key:
            return
        else:
            status = self._latest_status.get(row.id, status)  # stored progress may lag what was published
        self._printers_told[row.id] = key
        await self.to_site(
            row.site_id,
            printer_frame(
                printer_id=row.id,
                name=row.name,
                technology=row.technology,
                state=shown,
                job_id=row.current_job_id,
                status=status,
                message=message,
            ),
        )

    async def retired(self, row: PrinterRecord) -> None:
        """The printer left the fleet: a last `printer` frame with state "retired", from the instance that
        showed it (once), and then it is forgotten."""
        if self._printers_told.pop(row.id, None) is None:
            return
        self._latest_status.pop(row.id, None)
        frame = printer_frame(
            printer_id=row.id,
            name=row.name,
            technology=row.technology,
            state=RETIRED,
            job_id=None,
            status={},
            message="retired: it has left the fleet",
        )
        await self.to_site(row.site_id, frame)

    async def job(self, row: PrintJob, event: str, *, reason: str | None = None, live: bool = False) -> None:
        """`reason`: what this event says, when it is not the job's own standing reason. `live`: the row
        carries what the host just said; other rows (read back, or changed by the API) may hold progress
        stored a moment ago, so a job on a printer is told with the live progress instead."""
        self._told[row.id] = row.updated_at_ms
        progress, layer = row.progress, row.layer
        if live:
            self._live[row.id] = (progress, layer)
        elif row.state in ("printing", "paused") and row.id in self._live:
            progress, layer = self._live[row.id]
        await self.to_site(
            row.site_id,
            print_job_frame(
                job_id=row.id,
                name=row.name,
                state=row.state,
                printer_id=row.printer_id,
                progress=progress,
                layer=layer,
                layers=row.layers,
                reason=reason or row.reason or row.wait_reason,
                event=event,
                purpose=row.purpose,
            ),
        )

    async def changed_jobs(self, at_ms: int) -> None:
        """Announce job rows changed elsewhere since the last scan (each version once)."""
        since = self._scan_from_ms - RESCAN_WINDOW_MS

        def load() -> list[tuple[PrintJob, str]]:
            with self.db.session() as session:
                rows = repository.changed_since(session, since)
                fresh = [row for row in rows if self._told.get(row.id) != row.updated_at_ms]
                return [(row, repository.last_event(session, row.id)) for row in fresh]

        self._scan_from_ms = at_ms
        for row, event in await self.db.run_read(load):
            await self.job(row, event)
        self._forget_before(since)

    def _forget_before(self, since_ms: int) -> None:
        for job_id, version in list(self._told.items()):
            if version < since_ms - RESCAN_WINDOW_MS:
                del self._told[job_id]
                self._live.pop(job_id, None)
