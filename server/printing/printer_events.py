"""Applying a printer host's event: decide with `tracking.follow`, store, and tell the maker rooms.

Per printer, events are applied one at a time in arrival order (a lock per printer). The decision and
the writes happen in one database call, on the rows as they are at that moment. Progress is published
with every event but stored at most every `progress_write_s` (a host may report twice a second); state
changes are stored at once, each with its history line.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from server.core.db import Database, now_ms
from server.printing import repository
from server.printing.announce import Announcer
from server.printing.drivers.base import PrinterEvent, PrinterState, PrinterStatus
from server.printing.frames import status_json
from server.printing.models import PrinterRecord, PrintJob
from server.printing.tracking import JobFacts, Outcome, PrinterFacts, effective_state, follow, host_down

log = logging.getLogger("trinity.printing")

# (artifact_id, print_job_id, succeeded, detail, printer_id): the record's audit and notification hook
OutcomeHook = Callable[[str, str, bool, str, str], Awaitable[None]]
ENDINGS = frozenset({"done", "failed", "cancelled"})


@dataclass
class Step:
    printer: PrinterRecord
    job: PrintJob | None
    outcome: Outcome
    stored: bool


class EventApplier:
    def __init__(
        self,
        db: Database,
        announcer: Announcer,
        *,
        progress_write_s: float,
        nudge: Callable[[], None],
        on_outcome: OutcomeHook | None = None,
    ) -> None:
        self.db = db
        self.announcer = announcer
        self.progress_write_s = progress_write_s
        self.nudge = nudge
        self.on_outcome = on_outcome
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._last_store: dict[str, float] = {}

    async def apply(self, printer_id: str, event: PrinterEvent, cameras: list[str]) -> None:
        async with self._locks[printer_id]:
            loop = asyncio.get_running_loop()
            due = loop.time() - self._last_store.get(printer_id, 0.0) >= self.progress_write_s
            step = await self.db.run_write(self._step, printer_id, event, cameras, now_ms(), due)
            if step is None:
                return
            if step.stored:
                self._last_store[printer_id] = loop.time()
            await self.announcer.printer(step.printer)
            outcome = step.outcome
            if step.job is not None and outcome.job_event is not None:
                await self.announcer.job(step.job, outcome.job_event, reason=outcome.reason or None, live=True)
            if outcome.job_event in ENDINGS or outcome.printer or host_down(event) or event.kind == "connected":
                self.nudge()  # a printer may be free, or busy, now: the scheduler looks again
            if step.job is not None and outcome.job_event in ("done", "failed") and self.on_outcome is not None:
                try:
                    await self.on_outcome(
                        step.job.artifact_id, step.job.id, outcome.job_event == "done", outcome.reason, printer_id
                    )
                except Exception:  # the record's audit or notification must not stop printing
                    log.exception("recording a print outcome failed", extra={"print_job": step.job.id})

    def _step(
        self, printer_id: str, event: PrinterEvent, cameras: list[str], at_ms: int, progress_due: bool
    ) -> Step | None:
        with self.db.session() as session:
            row = session.get(PrinterRecord, printer_id)
            if row is None or row.retired_at_ms is not None:  # retired: its monitor is about to close
                return None
            job = session.get(PrintJob, row.current_job_id) if row.current_job_id else None
            session.expunge_all()  # detached: what we set on them below is for the frames, never flushed
            old_driver = repository.driver_state(row)
            status = event.status
            if host_down(event):  # whatever the host said last, nobody hears it now
                status = replace(status or PrinterStatus(PrinterState.OFFLINE), state=PrinterState.OFFLINE)
            facts = PrinterFacts(old_driver, row.bed_clear, row.queue_paused, row.current_job_id)
            job_facts = JobFacts(job.id, job.state, job.remote_file) if job is not None else None
            outcome = follow(facts, job_facts, replace(event, status=status), now_ms=at_ms)
            status_doc: dict[str, Any] = dict(row.status)
            if status is not None:
                status_doc = {**status_json(status), "cameras": cameras}
            new_driver = status.state if status is not None else old_driver
            for key, value in outcome.printer.items():
                setattr(row, key, value)
            shown = effective_state(new_driver, maintenance=row.maintenance, bed_clear=row.bed_clear).value
            stored = outcome.changes_state or new_driver is not old_driver or progress_due
            row.status, row.state = status_doc, shown
            if stored:
                repository.set_printer(session, printer_id, status=status_doc, state=shown, **outcome.printer)
            if job is not None and outcome.job:
                if "state" in outcome.job or stored:
                    moved = repository.transition(
                        session,
                        job.id,
                        allowed_from=(job.state,),
                        changes=outcome.job,
                        who=repository.SYSTEM,
                        what=outcome.job_event if "state" in outcome.job else None,
                        reason=outcome.reason,
                    )
                    job = moved or job
                else:
                    for key, value in outcome.job.items():
                        setattr(job, key, value)
            elif job is not None and outcome.job_event == "monitoring_resumed":
                repository.add_event(
                    session,
                    job.id,
                    who=repository.SYSTEM,
                    what=outcome.job_event,
                    printer_id=printer_id,
                    reason=outcome.reason,
                )
                session.commit()
            return Step(row, job, outcome, stored)
