"""The supervisor's work on each tick, in order:

1. background jobs: a newly queued (or retried) print job gets its `printing.prepare` job; a prepare or
   slice job that failed fails its print job (and frees the printer);
2. operators' commands (pause, resume, cancel) for jobs on a printer go to that printer's driver;
3. sliced jobs are uploaded to their printer and started;
4. `scheduler.schedule` matches the released, ready jobs of each site to its free printers: each start
   reserves the printer and submits a `printing.slice` job (or reuses the file sliced for that printer
   before); a job nothing could ever print is refused; the others say why they wait.

Every state change goes through `repository.transition` (conditional on the state it starts from) and is
announced to the site's maker rooms. A host that refuses or does not answer never stops the tick: the
job goes back to the queue with the reason, and the printer's queue is paused when the host refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from server.core.blobs import FilesystemBlobStore
from server.core.db import Database, now_ms
from server.core.jobs import JobRunner, JobSpec
from server.printing import repository
from server.printing.announce import Announcer
from server.printing.drivers.base import PrinterDriver, PrinterRejected, PrinterState, PrinterUnreachable
from server.printing.errors import InvalidPrinterSpec
from server.printing.models import PrinterRecord, PrintJob
from server.printing.scheduler import Decision, PrinterView, schedule

log = logging.getLogger("trinity.printing")

SYSTEM = repository.SYSTEM
UNRELEASED = "waiting for a technician or admin to start it"
COMMANDS = ("pause", "resume", "cancel")
TARGET = {"pause": "paused", "resume": "printing", "cancel": "cancelled"}  # the job state a command leads to
COMMAND_RESEND_S = 3.0
COMMAND_RETRY_S = 20.0


class Dispatcher:
    def __init__(
        self,
        db: Database,
        jobs: JobRunner,
        blobs: FilesystemBlobStore,
        announcer: Announcer,
        *,
        driver_of: Callable[[str], PrinterDriver | None],
        spool_dir: Path,
    ) -> None:
        self.db = db
        self.jobs = jobs
        self.blobs = blobs
        self.announcer = announcer
        self.driver_of = driver_of
        self.spool_dir = spool_dir
        self._starting: dict[str, asyncio.Task[None]] = {}
        self._commanded: dict[str, tuple[str, float, float]] = {}  # job -> (command, first and last time sent)

    async def close(self) -> None:
        for task in self._starting.values():
            task.cancel()
        for task in list(self._starting.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def recover(self) -> None:
        """On taking over: a print this instance was not starting itself was being started by a supervisor
        that is gone. Whether the printer got it is for its host to say (`tracking`: monitoring resumes)."""
        for job in await self._read(lambda s: repository.jobs(s, states=("starting",))):
            reason = "the supervisor changed while this print was being started"
            await self.move(
                job.id, ("starting",), {"state": "interrupted", "reason": reason}, "interrupted", reason=reason
            )

    async def run_once(self, printers: list[PrinterRecord]) -> None:
        open_jobs = await self._read(lambda s: repository.jobs(s, states=repository.OPEN_STATES))
        await self._check_background(open_jobs)
        await self._commands(open_jobs)
        for job in open_jobs:
            if job.state == "sliced" and job.id not in self._starting:
                task = asyncio.create_task(self._start_on_printer(job), name=f"print-start-{job.id}")
                self._starting[job.id] = task
                task.add_done_callback(functools.partial(self._started, job.id))
        ready = [job for job in open_jobs if job.state == "ready"]
        for site_id in sorted({job.site_id for job in ready}):
            await self._schedule_site(site_id, [p for p in printers if p.site_id == site_id], ready)

    # --- helpers ---

    def _started(self, job_id: str, _task: asyncio.Task[None]) -> None:
        self._starting.pop(job_id, None)

    async def _read(self, fn: Callable[[Any], Any]) -> Any:
        def run() -> Any:
            with self.db.session() as session:
                return fn(session)

        return await self.db.run_read(run)

    async def move(
        self,
        job_id: str,
        allowed_from: tuple[str, ...] | None,
        changes: dict[str, Any],
        what: str | None,
        *,
        event: str | None = None,
        reason: str = "",
        free_printer: str | None = None,
        **detail: Any,
    ) -> PrintJob | None:
        """A conditional transition, announced; `free_printer` drops the printer's reservation of this job."""

        def write() -> PrintJob | None:
            with self.db.session() as session:
                row = repository.transition(
                    session,
                    job_id,
                    allowed_from=allowed_from,
                    changes=changes,
                    who=SYSTEM,
                    what=what,
                    reason=reason,
                    **detail,
                )
                if row is not None and free_printer is not None:
                    printer = session.get(PrinterRecord, free_printer)
                    if printer is not None and printer.current_job_id == job_id:
                        repository.set_printer(session, free_printer, current_job_id=None)
                return row

        row = await self.db.run_write(write)
        if row is not None and (what or event):
            await self.announcer.job(row, event or what or "changed")
        return row

    async def submit(self, kind: str, job: PrintJob, **params: Any) -> None:
        view = await self.jobs.submit(
            JobSpec(kind, {"print_job_id": job.id, **params}, submitted_by=job.created_by, room_id=job.room_id)
        )
        await self.move(job.id, None, {"task_job_id": view.id}, None)

    # --- 1. background jobs ---

    async def _check_background(self, open_jobs: list[PrintJob]) -> None:
        for job in open_jobs:
            if job.state == "preparing" and job.task_job_id is None:  # queued (or retried) through the API
                await self.submit("printing.prepare", job)
                continue
            if job.state not in ("preparing", "slicing") or job.task_job_id is None:
                continue
            view = await self.jobs.get(job.task_job_id)
            if view.state not in ("failed", "cancelled"):
                continue
            step = "preflight" if job.state == "preparing" else "slicing"
            reason = f"{step} failed: {view.error or view.message or view.state}"
            await self.move(
                job.id,
                (job.state,),
                {"state": "failed", "reason": reason[:2000], "finished_at_ms": now_ms()},
                "failed",
                reason=reason,
                free_printer=job.printer_id,
            )

    # --- 2. commands ---

    async def _commands(self, open_jobs: list[PrintJob]) -> None:
        """Send each command until the job shows its effect. A host between states may accept and ignore it
        (OctoPrint takes "resume" while still "Pausing") or refuse it for a moment: it is sent again every
        COMMAND_RESEND_S, and reported failed after COMMAND_RETRY_S."""
        clock = asyncio.get_running_loop().time()
        for job in open_jobs:
            if job.command not in COMMANDS or job.printer_id is None:
                self._commanded.pop(job.id, None)
                continue
            if TARGET.get(job.command) == job.state:  # done: the printer's own event moved the job
                self._commanded.pop(job.id, None)
                await self.move(job.id, None, {"command": None, "command_by": None}, None)
                continue
            if job.state not in ("printing", "paused"):
                continue  # starting: the command waits until the print runs
            command, first, last = self._commanded.get(job.id, (job.command, clock, -COMMAND_RESEND_S))
            if command != job.command:  # a new command (resume after pause): its own tries
                first, last = clock, -COMMAND_RESEND_S
            if clock - first >= COMMAND_RETRY_S:
                self._commanded.pop(job.id, None)
                reason = f"{job.command} failed: the printer did not {job.command} within {COMMAND_RETRY_S:g} s"
                await self._command_failed(job, reason)
                continue
            if clock - last < COMMAND_RESEND_S:
                continue
            self._commanded[job.id] = (job.command, first, clock)
            driver = self.driver_of(job.printer_id)
            try:
                if driver is None:
                    raise PrinterUnreachable(f"printer {job.printer_id} is not connected")
                await getattr(driver, str(job.command))()
            except PrinterRejected as exc:  # maybe only for a moment: tried again until COMMAND_RETRY_S
                log.info("printer refused %s for now: %s", job.command, exc, extra={"print_job": job.id})
            except Exception as exc:  # unreachable, or a driver bug: reported, not retried
                if not isinstance(exc, PrinterUnreachable):
                    log.exception("printer command failed", extra={"print_job": job.id})
                self._commanded.pop(job.id, None)
                await self._command_failed(job, f"{job.command} failed: {exc}")

    async def _command_failed(self, job: PrintJob, reason: str) -> None:
        clear = {"command": None, "command_by": None}
        await self.move(job.id, None, clear, "command_failed", reason=reason, by=job.command_by)

    # --- 3. sliced → uploaded → started ---

    async def _start_on_printer(self, job: PrintJob) -> None:
        printer_id = job.printer_id
        entry = job.files.get(printer_id or "")
        driver = self.driver_of(printer_id) if printer_id else None
        if printer_id is None or entry is None or driver is None:
            await self._back_to_queue(job, "not started: the printer is not connected")
            return
        if await self.move(job.id, ("sliced",), {"state": "starting"}, None) is None:
            return  # cancelled meanwhile
        local = self._spool(job, entry)
        try:
            remote = await driver.upload(local, f"trinity-{job.id[:12]}{entry['suffix']}")
            await self.move(job.id, ("starting",), {"remote_file": remote}, "uploaded", remote_file=remote)
            await driver.start(remote)
        except PrinterUnreachable as exc:
            await self._back_to_queue(job, f"not started: the printer host does not answer: {exc}")
        except Exception as exc:  # the host said no (or answered nonsense): someone should look at it
            if not isinstance(exc, PrinterRejected | OSError):
                log.exception("starting a print failed", extra={"print_job": job.id})
            reason = f"not started: the printer refused: {exc}"
            await self._back_to_queue(job, reason)
            await self.db.run_write(self._pause_queue, printer_id, reason)
        else:
            await self.move(job.id, ("starting",), {"state": "printing", "started_at_ms": now_ms()}, "started")
        finally:
            local.unlink(missing_ok=True)

    def _spool(self, job: PrintJob, entry: dict[str, Any]) -> Path:
        """The print file under its proper name (drivers and hosts read the suffix), linked from the blob store."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        local = self.spool_dir / f"{job.id}{entry['suffix']}"
        local.unlink(missing_ok=True)
        source = self.blobs.path_of(entry["sha256"])
        try:
            os.link(source, local)
        except OSError:  # another filesystem
            shutil.copyfile(source, local)
        return local

    def _pause_queue(self, printer_id: str, reason: str) -> None:
        with self.db.session() as session:
            repository.set_printer(session, printer_id, queue_paused=True, state_message=reason[:500])

    async def _back_to_queue(self, job: PrintJob, reason: str) -> None:
        changes = {"state": "ready", "printer_id": None, "remote_file": None, "wait_reason": reason[:500]}
        await self.move(
            job.id, ("sliced", "starting"), changes, "not_started", reason=reason, free_printer=job.printer_id
        )

    # --- 4. scheduling ---

    async def _schedule_site(self, site_id: str, printers: list[PrinterRecord], ready: list[PrintJob]) -> None:
        waiting = [job for job in ready if job.site_id == site_id]
        for job in waiting:
            if job.released_by is None and job.wait_reason != UNRELEASED:
                await self.move(job.id, ("ready",), {"wait_reason": UNRELEASED}, None, event="waiting")
        released = [job for job in waiting if job.released_by is not None]
        if not released:
            return
        views = []
        for row in printers:
            try:
                views.append(PrinterView(repository.spec_of(row), self._state_for_scheduling(row), row.queue_paused))
            except InvalidPrinterSpec as exc:
                log.warning("printer %s left out of scheduling: %s", row.id, exc)
        decision: Decision = schedule(views, [repository.queued_job(job) for job in released])
        by_id = {job.id: job for job in released}
        for start in decision.starts:
            await self._reserve(by_id[start.job_id], start.printer_id, start.turn_deg)
        for refusal in decision.refusals:
            reasons = {pid: list(why) for pid, why in refusal.printer_reasons.items()}
            detail = "; ".join(f"{pid}: {', '.join(why)}" for pid, why in sorted(reasons.items()))
            reason = f"{refusal.reason}{' — ' + detail if detail else ''}"
            await self.move(
                refusal.job_id,
                ("ready",),
                {"state": "refused", "reason": reason[:2000], "finished_at_ms": now_ms()},
                "refused",
                reason=reason,
            )
        for wait in decision.waiting:
            if by_id[wait.job_id].wait_reason != wait.reason[:500]:
                await self.move(wait.job_id, ("ready",), {"wait_reason": wait.reason[:500]}, None, event="waiting")

    def _state_for_scheduling(self, row: PrinterRecord) -> PrinterState:
        if row.current_job_id is not None:
            return PrinterState.PRINTING  # reserved: slicing, starting or printing a job
        if self.driver_of(row.id) is None:
            return PrinterState.OFFLINE
        return repository.shown_state(row)

    async def _reserve(self, job: PrintJob, printer_id: str, turn_deg: float) -> None:
        def write() -> PrintJob | None:
            with self.db.session() as session:
                if not repository.reserve_printer(session, printer_id, job.id):  # taken, or retired, meanwhile
                    session.rollback()
                    return None
                return repository.transition(  # commits the reservation with the job's move, or neither
                    session,
                    job.id,
                    allowed_from=("ready",),
                    changes={"state": "slicing", "printer_id": printer_id, "wait_reason": "", "reason": ""},
                    who=SYSTEM,
                    what="assigned",
                    turn_deg=turn_deg,
                )

        row = await self.db.run_write(write)
        if row is None:
            return
        await self.announcer.job(row, "assigned")
        printer = await self._read(lambda s: repository.get_printer(s, printer_id))
        entry = row.files.get(printer_id)
        if entry and entry.get("setup") == repository.setup_key(printer):  # sliced for this printer as it is set up now
            await self.move(row.id, ("slicing",), {"state": "sliced"}, "sliced", cached=True)
        else:
            await self.submit("printing.slice", row, printer_id=printer_id)
