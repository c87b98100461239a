"""The embedded job runner: each job in its own worker process, at most `workers` at once.

A process per job (not a pool) so that cancel and timeouts can stop the work for real. Jobs found
queued or running at start-up (the server died under them) run again: at-least-once, like the
distributed runner's acks-late redelivery, so job functions must be idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import multiprocessing
import traceback
from multiprocessing.connection import Connection
from typing import Any

from server.core.db import Database, now_ms
from server.core.errors import Conflict, Invalid
from server.core.job_store import (
    PROGRESS_WRITE_EVERY_S,
    JobRecord,
    finish_changes,
    insert_job,
    job_frame,
    load_job,
    start_changes,
    to_view,
    unfinished,
    update_job,
)
from server.core.jobs import REGISTRY, TERMINAL_STATES, JobSpec, JobView, Publish, clean_up
from server.settings import Settings

log = logging.getLogger("trinity.jobs")


def _die_with_parent() -> None:
    """Linux: if the server is SIGKILLed, take its workers down too (the job is re-run on restart)."""
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _worker_main(
    module: str,
    kind: str,
    params: dict[str, Any],
    conn: Connection,
    settings: dict[str, Any] | None,
    job: dict[str, Any],
) -> None:
    """Runs in the child process."""
    _die_with_parent()
    try:
        from server.core import worker_context
        from server.settings import Settings

        worker_context.configure(Settings.model_validate(settings) if settings else Settings())
        worker_context.set_job(job["id"], room_id=job["room_id"], submitted_by=job["submitted_by"])
        importlib.import_module(module)
        fn = REGISTRY[kind].fn
        result = fn(params, lambda fraction, message: conn.send(("progress", float(fraction), str(message)[:500])))
        conn.send(("done", result))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=5)))
    finally:
        conn.close()


class LocalJobRunner:
    def __init__(self, *, db: Database, publish: Publish, workers: int = 2, settings: Settings | None = None) -> None:
        self.db = db
        # The worker process gets the app's settings (tests build them in code, not in the environment).
        self._settings_dump = settings.model_dump(mode="json") if settings else None
        self.publish = publish
        self._slots = asyncio.Semaphore(max(1, workers))
        self._processes: dict[str, multiprocessing.process.BaseProcess] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._context = multiprocessing.get_context("spawn")

    async def start(self) -> None:
        for record in await self.db.run_read(self._unfinished):
            log.info("re-running job left unfinished by a previous process", extra={"job": record.id})
            self._schedule(record.id)

    def _unfinished(self) -> list[JobRecord]:
        with self.db.session() as db:
            return unfinished(db)

    async def close(self) -> None:
        for process in self._processes.values():
            process.terminate()
        for task in self._tasks.values():
            task.cancel()
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ---- the JobRunner interface ----------------------------------------------------------------
    async def submit(self, spec: JobSpec) -> JobView:
        if spec.kind not in REGISTRY:
            raise Invalid(f"unknown job kind {spec.kind!r}")
        record, created = await self.db.run_write(self._insert, spec)
        if created:
            self._schedule(record.id)
            await self._announce(record)
        return to_view(record)

    def _insert(self, spec: JobSpec) -> tuple[JobRecord, bool]:
        with self.db.session() as db:
            return insert_job(db, spec)

    async def get(self, job_id: str) -> JobView:
        return to_view(await self.db.run_read(self._load, job_id))

    async def cancel(self, job_id: str, by: str) -> JobView:
        record = await self.db.run_read(self._load, job_id)
        if record.state in TERMINAL_STATES:
            raise Conflict(f"job is already {record.state}")
        record = await self.db.run_write(self._update, job_id, {"cancel_requested": True})
        process = self._processes.get(job_id)
        if process is not None:
            process.terminate()  # the run loop sees the exit and records the cancellation
        elif record.state == "queued":
            task = self._tasks.get(job_id)
            if task:
                task.cancel()
            record = await self.db.run_write(
                self._update,
                job_id,
                {"state": "cancelled", "message": f"cancelled by {by}", "finished_at_ms": now_ms()},
            )
            await asyncio.to_thread(clean_up, record.kind, record.params)
            await self._announce(record)
        return to_view(record)

    # ---- running --------------------------------------------------------------------------------
    def _schedule(self, job_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._run(job_id), name=f"job-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(job_id, None))

    def _load(self, job_id: str) -> JobRecord:
        with self.db.session() as db:
            return load_job(db, job_id)

    def _update(self, job_id: str, changes: dict[str, Any]) -> JobRecord:
        with self.db.session() as db:
            return update_job(db, job_id, changes)

    async def _announce(self, record: JobRecord) -> None:
        if record.room_id:
            await self.publish(record.room_id, job_frame(record))

    async def _run(self, job_id: str) -> None:
        async with self._slots:
            record = await self.db.run_read(self._load, job_id)
            if record.state in TERMINAL_STATES or record.cancel_requested:
                return
            kind = REGISTRY[record.kind]
            record = await self.db.run_write(self._update, job_id, start_changes(record))
            await self._announce(record)
            job = {"id": job_id, "room_id": record.room_id, "submitted_by": record.submitted_by}
            outcome = await self._supervise(job_id, kind.fn.__module__, kind.name, record.params, kind.timeout_s, job)
            final = await self.db.run_read(self._load, job_id)
            if final.cancel_requested and outcome[0] != "done":
                outcome = ("cancelled", "cancelled")
            record = await self.db.run_write(self._update, job_id, finish_changes(outcome))
            # Only now: a server that dies before this line runs the job again, with its inputs.
            await asyncio.to_thread(clean_up, record.kind, record.params)
            await self._announce(record)

    async def _supervise(
        self, job_id: str, module: str, kind: str, params: dict[str, Any], timeout_s: float, job: dict[str, Any]
    ) -> tuple[str, Any]:
        loop = asyncio.get_running_loop()
        parent, child = self._context.Pipe(duplex=False)
        args = (module, kind, params, child, self._settings_dump, job)
        process = self._context.Process(target=_worker_main, args=args, daemon=True)
        process.start()
        child.close()
        self._processes[job_id] = process
        messages: asyncio.Queue[Any] = asyncio.Queue()

        def readable() -> None:
            try:
                messages.put_nowait(parent.recv())
            except (EOFError, OSError):
                loop.remove_reader(parent.fileno())
                messages.put_nowait(("exit",))

        loop.add_reader(parent.fileno(), readable)
        deadline = loop.time() + timeout_s
        last_write = 0.0
        outcome: tuple[str, Any] = ("error", "worker ended without a result")
        getter: asyncio.Task[Any] | None = None
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    process.terminate()
                    outcome = ("error", f"timed out after {timeout_s:g} s")
                    break
                # One get() task kept across timeouts: cancelling a get() that already took an item loses it.
                getter = getter or asyncio.ensure_future(messages.get())
                done, _ = await asyncio.wait({getter}, timeout=remaining)
                if not done:
                    continue
                message, getter = getter.result(), None
                if message[0] == "progress":
                    if loop.time() - last_write >= PROGRESS_WRITE_EVERY_S or message[1] >= 1.0:
                        last_write = loop.time()
                        record = await self.db.run_write(
                            self._update, job_id, {"progress": message[1], "message": message[2]}
                        )
                        await self._announce(record)
                elif message[0] == "done":
                    outcome = ("done", message[1])
                elif message[0] == "error":
                    outcome = ("error", message[1])
                elif message[0] == "exit":
                    if outcome[0] == "error" and outcome[1] == "worker ended without a result":
                        await loop.run_in_executor(None, process.join, 5)
                        outcome = ("error", f"worker process died (exit code {process.exitcode})")
                    break
        finally:
            if getter is not None:
                getter.cancel()
            with contextlib.suppress(Exception):
                loop.remove_reader(parent.fileno())
            parent.close()
            if process.is_alive():
                process.terminate()
            await loop.run_in_executor(None, process.join, 5)
            self._processes.pop(job_id, None)
        return outcome
