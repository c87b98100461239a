"""The distributed job runner: Celery workers on a Redis broker, behind the same `JobRunner` Protocol.

The app side (`CeleryJobRunner`, TRINITY_JOB_RUNNER=celery) records a queued job in the jobs table and
sends one generic task, `trinity.run_job(job_id)`, whose task id is the job id. A worker
(`celery -A server.core.jobs_celery worker`, settings from the same TRINITY_* variables) loads the row,
takes the job's lease, marks it running, runs `REGISTRY[kind].fn(params, progress)`, and writes the
progress (throttled) to the row and, as `job` frames, into the room's Redis stream, from which the app
instances serving the room deliver it. Then it records the result or the error.

At-least-once delivery, one completion:
- acks late: the message is acknowledged after the run. When the pool process running a job dies the
  message is re-queued at once (reject_on_worker_lost); when the whole worker dies, Redis gives the
  unacknowledged message to another worker after the visibility timeout (TRINITY_JOB_VISIBILITY_TIMEOUT_S).
- a delivery for a job that has finished or was cancelled does nothing. One for a job whose run still
  holds its lease (a live worker; the visibility timeout passed during a long run) comes back after
  `job_lease_s` instead of running the job a second time at once; a dead run's lease expires.
- every write of a run is fenced on (state running, its attempt number): a cancelled job, or a run that
  another one took over, cannot overwrite the row, and its next progress report stops it.
Cancel marks the row cancelled and revokes the task, killing the pool process that runs it.
Retryable failures (`RetryableJobError`, the database or Redis away) run again after
job_retry_backoff_s, then twice that, and so on, up to job_max_retries times.
Time limits: soft = JobKind.timeout_s (the job fails "timed out"), hard = soft + HARD_LIMIT_GRACE_S.
A job kind's cleanup (its spool folder) runs once the job has ended: after the run's final write, on a
delivery that finds the job ended, or in the app on cancel; never while a retry or redelivery may come.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery, Task, signals
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import InterfaceError, OperationalError

from server.core import worker_context
from server.core.bus import ephemeral_message
from server.core.bus_redis import STREAM_MAXLEN, encode, stream_key
from server.core.db import Database
from server.core.job_lease import JobLease, Superseded
from server.core.job_store import (
    PROGRESS_WRITE_EVERY_S,
    JobRecord,
    finish_changes,
    job_frame,
    load_job,
    start_changes,
    update_job_if,
)
from server.core.jobs import REGISTRY, TERMINAL_STATES, CancelledByUser, RetryableJobError, clean_up
from server.rooms.frames import dumps
from server.settings import Settings

log = logging.getLogger("trinity.jobs")

TASK_NAME = "trinity.run_job"
HARD_LIMIT_GRACE_S = 30.0  # after the soft limit, the job has this long to stop before its process is killed

CANCEL_SIGNAL = "SIGKILL"  # a cancelled job's pool process is killed: no job code runs after a cancel
RETRYABLE = (RetryableJobError, OperationalError, InterfaceError, RedisConnectionError, RedisTimeoutError)
ACTIVE_STATES = ("queued", "running")


# ---- the Celery app -------------------------------------------------------------------------------
def celery_config(settings: Settings) -> dict[str, Any]:
    if not settings.redis_url:
        raise ValueError("the Celery job runner needs a broker: set TRINITY_REDIS_URL")
    visibility = float(settings.job_visibility_timeout_s)
    restore_every_s = max(0.5, min(10.0, visibility / 4))
    return {
        "broker_url": settings.redis_url,
        "result_backend": settings.redis_url,
        "result_expires": 24 * 3600,
        "task_default_queue": settings.job_queue,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        # A Redis blip does not kill the running jobs: their messages go back to the queue, and the
        # lease keeps the second delivery waiting until the first run ends (then it does nothing).
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # A pool process that died is reported (and its job re-queued) after this; by default 10 s.
        "worker_lost_wait": 2.0,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": visibility,
            # How often a worker looks for messages whose worker died (by default every 100 s), and how
            # long the lock of that sweep outlives a worker killed while holding it (by default 300 s).
            "unacked_restore_interval": restore_every_s,
            "unacked_restore_throttle": 1,
            "unacked_mutex_expire": max(5, int(restore_every_s * 3)),
        },
    }


def make_celery_app(settings: Settings | None = None) -> Celery:
    """With settings, configured now (the app side); without, configured from the TRINITY_* environment
    when first used (the worker): importing this module needs neither Redis nor the database."""
    from server.job_kinds import JOB_MODULES

    celery = Celery("trinity", set_as_current=settings is None, include=list(JOB_MODULES))
    if settings is not None:
        celery.conf.update(celery_config(settings))
    else:
        celery.add_defaults(lambda: celery_config(Settings()))
    return celery


app = make_celery_app()  # `celery -A server.core.jobs_celery worker` runs this one


@signals.setup_logging.connect
def _worker_logging(**_kwargs: Any) -> None:
    """The worker logs like the app instances (TRINITY_LOG_LEVEL, TRINITY_LOG_JSON)."""
    from server.core.logs import configure

    settings = Settings()
    configure(settings.log_level, settings.log_json)


# ---- in the worker ----------------------------------------------------------------------------------
@dataclass
class _Worker:
    """What a worker process uses, built in that process on its first job (never at import)."""

    pid: int
    settings: Settings
    db: Database
    redis: redis.Redis
    name: str


_worker: _Worker | None = None


def _context() -> _Worker:
    global _worker
    if _worker is not None and _worker.pid == os.getpid():
        return _worker
    if _worker is not None:  # inherited from the parent by fork: leave its connections to the parent
        _worker.db.engine.dispose(close=False)
    settings = Settings()
    _worker = _Worker(
        pid=os.getpid(),
        settings=settings,
        db=Database(settings),
        redis=redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5),
        name=f"worker-{socket.gethostname()}-{os.getpid()}",
    )
    return _worker


def _announce(ctx: _Worker, record: JobRecord) -> None:
    """The job frame into the room, as `Hubs.publish` would: a bus message on the room's stream."""
    if not record.room_id:
        return
    message = ephemeral_message(ctx.name, dumps(job_frame(record)))
    try:
        ctx.redis.xadd(stream_key(record.room_id), encode(message), maxlen=STREAM_MAXLEN, approximate=True)
    except RedisError as exc:  # the frame is lost; the row has the state
        log.warning("could not publish job progress: %s", exc, extra={"room_id": record.room_id})


def _write(ctx: _Worker, job_id: str, changes: dict[str, Any], attempt: int | None = None) -> JobRecord | None:
    """A fenced write of this run: only while the job is running (on this attempt, when given)."""
    with ctx.db.session() as db:
        return update_job_if(db, job_id, changes, states=("running",), attempt=attempt)


class JobTask(Task):
    acks_late = True
    reject_on_worker_lost = True
    max_retries = None  # retries are counted by run_job itself (`failures`), not by Celery

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """Called in the worker's main process when the hard time limit killed the job's process."""
        if isinstance(exc, TimeLimitExceeded):
            ctx = _context()
            record = _write(ctx, task_id, finish_changes(("error", f"timed out ({exc})")))
            if record is not None:
                clean_up(record.kind, record.params)
                _announce(ctx, record)


def _backoff_s(settings: Settings, failures: int) -> float:
    # Below half the visibility timeout, so that a waiting retry is not handed to a second worker.
    delay = settings.job_retry_backoff_s * 2**failures
    return float(min(delay, max(1.0, settings.job_visibility_timeout_s / 2)))


@app.task(bind=True, base=JobTask, name=TASK_NAME)
def run_job(self: JobTask, job_id: str, failures: int = 0) -> str:
    """Run one job to its end (or hand it back for a retry); returns the state it was left in."""
    ctx = _context()
    try:
        return _run(self, ctx, job_id, failures)
    except RETRYABLE as exc:  # the database or Redis away before or after the job function ran
        if failures >= ctx.settings.job_max_retries:
            raise
        log.warning("job %s: %s; trying again", job_id, exc)
        raise self.retry(countdown=_backoff_s(ctx.settings, failures), kwargs={"failures": failures + 1}) from exc


def _ended(record: JobRecord) -> str:
    """A delivery of a job that has ended: clean up after it again (its worker may have died between
    the final write and the cleanup; a cleanup is idempotent), run nothing."""
    if record.state in TERMINAL_STATES:
        clean_up(record.kind, record.params)
    return record.state


def _run(task: JobTask, ctx: _Worker, job_id: str, failures: int) -> str:
    with ctx.db.session() as db:
        record = db.get(JobRecord, job_id)
    if record is None:
        log.warning("job %s is not in the jobs table", job_id)
        return "missing"
    if record.state in TERMINAL_STATES or record.cancel_requested:
        return _ended(record)  # a redelivery of a job already finished or cancelled: done once
    kind = REGISTRY.get(record.kind)
    if kind is None:
        with ctx.db.session() as db:
            failed = update_job_if(
                db, job_id, finish_changes(("error", f"unknown job kind {record.kind!r}")), states=ACTIVE_STATES
            )
        if failed is not None:
            _announce(ctx, failed)
        return "failed"
    lease = JobLease(ctx.redis, job_id, ctx.settings.job_lease_s)
    if not lease.acquire():
        # Another run of this job is alive (or died less than a lease ago): look again later.
        raise task.retry(countdown=ctx.settings.job_lease_s, kwargs={"failures": failures})
    try:
        with ctx.db.session() as db:
            record = load_job(db, job_id)
            if record.state in TERMINAL_STATES or record.cancel_requested:
                return _ended(record)
            running = update_job_if(db, job_id, start_changes(record), states=ACTIVE_STATES, attempt=record.attempts)
        if running is None:
            return "superseded"
        _announce(ctx, running)
        worker_context.set_job(job_id, room_id=running.room_id, submitted_by=running.submitted_by)
        attempt = running.attempts
        last_write = 0.0

        def progress(fraction: float, message: str) -> None:
            nonlocal last_write
            if lease.lost.is_set():
                raise Superseded("another run of this job took over")
            now = time.monotonic()
            if now - last_write < PROGRESS_WRITE_EVERY_S and fraction < 1.0:
                return
            last_write = now
            record = _write(ctx, job_id, {"progress": float(fraction), "message": str(message)[:500]}, attempt)
            if record is None:
                raise CancelledByUser("the job was cancelled")
            _announce(ctx, record)

        try:
            outcome: tuple[str, Any] = ("done", kind.fn(running.params, progress))
        except Superseded:
            return "superseded"  # the row is the other run's now
        except CancelledByUser as exc:
            outcome = ("cancelled", str(exc))
        except SoftTimeLimitExceeded:
            outcome = ("error", f"timed out after {kind.timeout_s:g} s")
        except RETRYABLE as exc:
            if failures >= ctx.settings.job_max_retries:
                outcome = ("error", f"{type(exc).__name__}: {exc} (after {failures} retries)")
            else:
                delay = _backoff_s(ctx.settings, failures)
                error = f"{type(exc).__name__}: {exc}"
                retrying = {"state": "queued", "message": f"retrying in {delay:g} s", "error": error[:2000]}
                waiting = _write(ctx, job_id, retrying, attempt)
                if waiting is None:
                    return "cancelled"
                _announce(ctx, waiting)
                raise task.retry(countdown=delay, kwargs={"failures": failures + 1}) from exc
        except Exception as exc:
            outcome = ("error", f"{type(exc).__name__}: {exc}")
        changes = finish_changes(outcome)
        if outcome[0] == "done":
            changes["error"] = None  # an earlier, retried attempt's error
        final = _write(ctx, job_id, changes, attempt)
        if final is None:
            return "cancelled"  # cancelled (or taken over) meanwhile: the row already says so
        # Only now: a worker that dies before this line leaves the message to be redelivered.
        clean_up(final.kind, final.params)
        _announce(ctx, final)
        return final.state
    finally:
        lease.release()


# ---- in the app -------------------------------------------------------------------------------------
