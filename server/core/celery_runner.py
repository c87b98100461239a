"""The app side of the distributed job runner: `CeleryJobRunner` stores each job's row, sends it to the
Celery workers (jobs_celery.py) on the Redis broker, cancels by revoking, and sends again the jobs an
instance stored but died before sending."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import redis
from celery import Celery
from sqlmodel import col, select

from server.core.db import Database, now_ms
from server.core.errors import Conflict, Invalid
from server.core.job_store import JobRecord, finish_changes, insert_job, job_frame, load_job, to_view, update_job_if
from server.core.jobs import REGISTRY, TERMINAL_STATES, JobSpec, JobView, Publish, clean_up
from server.core.jobs_celery import ACTIVE_STATES, CANCEL_SIGNAL, HARD_LIMIT_GRACE_S, TASK_NAME, make_celery_app
from server.settings import Settings

log = logging.getLogger("trinity.jobs")
T = TypeVar("T")
SENT_MARK_TTL_S = 7 * 24 * 3600  # how long a job keeps its "sent to the broker" mark (the sweeper reads it)


class CeleryJobRunner:
    """The JobRunner of the app instances when the jobs run on Celery workers."""

    def __init__(self, *, settings: Settings, db: Database, publish: Publish, celery: Celery | None = None) -> None:
        self.settings = settings
        self.db = db
        self.publish = publish
        self.celery = celery or make_celery_app(settings)
        self._broker = ThreadPoolExecutor(max_workers=4, thread_name_prefix="celery-client")
        self._redis = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # The broker holds the queue and jobs of a dead worker come back by themselves; only a job whose
        # app instance died between storing its row and sending it needs sending again.
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def close(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        self._broker.shutdown(wait=True)
        self.celery.close()
        self._redis.close()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.job_unsent_sweep_s)
            try:
                await self.send_unsent()
            except Exception as exc:  # Redis or the database away: the next sweep tries again
                log.warning("unsent-job sweep failed: %s", exc)

    async def send_unsent(self) -> list[str]:
        """Jobs queued for longer than a sweep period with no record of being sent: send them (a second
        send of one that was sent is harmless: its runs are leased and fenced)."""
        cutoff = now_ms() - int(self.settings.job_unsent_sweep_s * 1000)
        queued = await self.db.run_read(self._queued_before, cutoff)
        sent = []
        for job_id, kind in queued:
            if await self._on_broker(self._redis.exists, sent_key(job_id)):
                continue
            log.warning("job %s was stored but never sent (its instance died?): sending it now", job_id)
            await self._on_broker(self._send, job_id, REGISTRY[kind].timeout_s if kind in REGISTRY else 3600.0)
            sent.append(job_id)
        return sent

    def _queued_before(self, cutoff_ms: int) -> list[tuple[str, str]]:
        with self.db.session() as db:
            rows = db.exec(
                select(JobRecord.id, JobRecord.kind)
                .where(JobRecord.state == "queued", col(JobRecord.created_at_ms) < cutoff_ms)
                .limit(500)
            ).all()
            return [(r[0], r[1]) for r in rows]

    async def _on_broker(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._broker, fn, *args)

    # ---- the JobRunner interface ----------------------------------------------------------------
    async def submit(self, spec: JobSpec) -> JobView:
        kind = REGISTRY.get(spec.kind)
        if kind is None:
            raise Invalid(f"unknown job kind {spec.kind!r}")
        record, created = await self.db.run_write(self._insert, spec)
        if created:
            await self._announce(record)
            try:
                await self._on_broker(self._send, record.id, kind.timeout_s)
            except Exception as exc:
                log.exception("could not queue job %s", record.id)
                failed = await self.db.run_write(
                    self._update_if, record.id, finish_changes(("error", f"could not queue the job: {exc}"))
                )
                if failed is not None:
                    record = failed
                    await asyncio.to_thread(clean_up, record.kind, record.params)
                    await self._announce(record)
        return to_view(record)

    async def get(self, job_id: str) -> JobView:
        return to_view(await self.db.run_read(self._load, job_id))

    async def cancel(self, job_id: str, by: str) -> JobView:
        record = await self.db.run_read(self._load, job_id)
        if record.state in TERMINAL_STATES:
            raise Conflict(f"job is already {record.state}")
        changes = {
            "cancel_requested": True,
            "state": "cancelled",
            "message": f"cancelled by {by}",
            "finished_at_ms": now_ms(),
        }
        cancelled = await self.db.run_write(self._update_if, job_id, changes)
        if cancelled is None:
            record = await self.db.run_read(self._load, job_id)
            raise Conflict(f"job is already {record.state}")
        try:
            await self._on_broker(self._revoke, job_id)
        except Exception as exc:  # the run still stops at its next progress report (its writes are fenced)
            log.warning("could not revoke job %s: %s", job_id, exc)
        await asyncio.to_thread(clean_up, cancelled.kind, cancelled.params)
        await self._announce(cancelled)
        return to_view(cancelled)

    # ---- helpers --------------------------------------------------------------------------------
    def _send(self, job_id: str, timeout_s: float) -> None:
        self.celery.send_task(
            TASK_NAME,
            args=[job_id],
            task_id=job_id,
            queue=self.settings.job_queue,
            soft_time_limit=timeout_s,
            time_limit=timeout_s + HARD_LIMIT_GRACE_S,
        )
        self._redis.set(sent_key(job_id), 1, ex=SENT_MARK_TTL_S)

    def _revoke(self, job_id: str) -> None:
        self.celery.control.revoke(job_id, terminate=True, signal=CANCEL_SIGNAL)

    def _insert(self, spec: JobSpec) -> tuple[JobRecord, bool]:
        with self.db.session() as db:
            return insert_job(db, spec)

    def _load(self, job_id: str) -> JobRecord:
        with self.db.session() as db:
            return load_job(db, job_id)

    def _update_if(self, job_id: str, changes: dict[str, Any]) -> JobRecord | None:
        with self.db.session() as db:
            return update_job_if(db, job_id, changes, states=ACTIVE_STATES)

    async def _announce(self, record: JobRecord) -> None:
        if record.room_id:
            await self.publish(record.room_id, job_frame(record))


def sent_key(job_id: str) -> str:
    return f"trinity:job:{job_id}:sent"


def make_celery_runner(settings: Settings, db: Database, publish: Publish) -> CeleryJobRunner:
    return CeleryJobRunner(settings=settings, db=db, publish=publish)
