"""Long work (imaging, mesh, slicing, printing) runs as jobs, behind one small interface.

A job kind is a plain function `fn(params, progress) -> result` registered by name; it runs in a
worker process, reports progress through `progress(fraction, message)`, and returns a JSON-able
result. The runner records every state change in the jobs table and publishes it into the job's room
as an ephemeral `job` frame. `LocalJobRunner` (embedded, `make run`) runs each job in its own process;
`CeleryJobRunner` (celery_runner.py, TRINITY_JOB_RUNNER=celery) hands them to Celery workers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

Progress = Callable[[float, str], None]
Publish = Callable[[str, dict[str, Any]], Awaitable[None]]  # (room_id, frame): a frame into a room
JobFunction = Callable[[dict[str, Any], Progress], dict[str, Any]]
Cleanup = Callable[[dict[str, Any]], None]  # given the job's params, once it has a final outcome

log = logging.getLogger("trinity.jobs")

TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class JobKind:
    name: str
    fn: JobFunction
    user_submittable: bool = False  # may a room member start it directly over REST
    timeout_s: float = 3600.0
    # What to remove (a spool folder) once the job has a final outcome, never while it may run again.
    cleanup: Cleanup | None = None


REGISTRY: dict[str, JobKind] = {}


def job_kind(
    name: str, *, user_submittable: bool = False, timeout_s: float = 3600.0, cleanup: Cleanup | None = None
) -> Callable[[JobFunction], JobFunction]:
    if cleanup is not None and user_submittable:
        raise ValueError(f"job kind {name}: a cleanup acts on params the server wrote, not a user's")

    def register(fn: JobFunction) -> JobFunction:
        REGISTRY[name] = JobKind(name, fn, user_submittable, timeout_s, cleanup)
        return fn

    return register


def clean_up(kind: str, params: dict[str, Any]) -> None:
    """The kind's cleanup, called by the runners once a job is succeeded, failed or cancelled (not when
    it is handed back for a retry or left to run again after a crash). Idempotent; never raises."""
    found = REGISTRY.get(kind)
    if found is None or found.cleanup is None:
        return
    try:
        found.cleanup(params)
    except Exception:
        log.exception("cleanup after job kind %s failed", kind)


@dataclass(frozen=True)
class JobSpec:
    kind: str
    params: dict[str, Any]
    submitted_by: str
    room_id: str | None = None
    idempotency_key: str | None = None


@dataclass
class JobView:
    id: str
    kind: str
    state: str  # queued | running | succeeded | failed | cancelled
    progress: float = 0.0
    message: str = ""
    room_id: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    attempts: int = 0
    timings: dict[str, int] = field(default_factory=dict)
    submitted_by: str = ""
    operation: str = ""  # a design job's operation (cut, guide, ...), so a client can name it before it ends


class JobRunner(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def submit(self, spec: JobSpec) -> JobView: ...

    async def cancel(self, job_id: str, by: str) -> JobView: ...

    async def get(self, job_id: str) -> JobView: ...


class CancelledByUser(Exception):
    pass


class RetryableJobError(Exception):
    """Raised by a job function for a failure worth another try (a service briefly away): the Celery
    runner runs the job again after a growing delay, up to `job_max_retries` times; else it fails."""


@job_kind("selftest.countdown", user_submittable=True, timeout_s=120)
def countdown(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """A harmless job for checking the pipeline end to end (and the web jobs panel)."""
    steps = max(1, min(int(params.get("steps", 5)), 100))
    delay = max(0.0, min(float(params.get("delay_s", 0.2)), 5.0))
    fail_at = int(params["fail_at"]) if params.get("fail_at") is not None else None
    for i in range(steps):
        if fail_at == i:
            raise ValueError(f"asked to fail at step {i}")
        time.sleep(delay)
        progress((i + 1) / steps, f"step {i + 1} of {steps}")
    return {"steps": steps}
