"""Jobs on Celery workers (TRINITY_JOB_RUNNER=celery): real worker processes, Redis and PostgreSQL.

Progress into the room, a worker SIGKILLed mid-job (the whole worker, or only its pool process), cancel
from the room, idempotency, retries with backoff and time limits. Each test has its own queue.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from celery import Celery

from server.core.bus_redis import RedisBus, decode, stream_key
from server.core.celery_runner import make_celery_runner
from server.core.db import Database
from server.core.job_lease import JobLease
from server.core.jobs import JobSpec, JobView
from server.core.jobs_celery import make_celery_app
from server.core.metrics import Metrics
from server.rooms.client import RoomClient
from server.rooms.hubs import Hubs
from server.settings import Settings
from tests.support import job_kinds
from tests.support.imaging_flow import wait_spool_empty
from tests.support.process import ROOT, ServerProcess
from tests.support.services import REDIS_URL, require_redis
from tests.support.world import World, create_room

pytestmark = pytest.mark.multiprocess

VISIBILITY_S = 4  # a job whose whole worker died is redelivered after this (plus a sweep of 1 s)
LEASE_S = 2
RETRY_BACKOFF_S = 0.5
MAX_RETRIES = 3


def process_running(pid: int) -> bool:
    """Alive and not a zombie (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


class CeleryWorker:
    """`celery -A server.core.jobs_celery worker` in its own process group, so that a SIGKILL takes
    the main process and its pool process together, as when a machine or container dies."""

    def __init__(self, env: dict[str, str], log_path: Path, control: Celery, queue: str) -> None:
        self.name = f"trinity-test-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.control = control
        self.queue = queue
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 20.0) -> CeleryWorker:
        command = [sys.executable, "-m", "celery", "-A", "server.core.jobs_celery", "worker"]
        command += ["--pool=prefork", "--concurrency=1", "-Q", self.queue, "-n", self.name]
        command += ["--without-gossip", "--without-mingle", "-I", job_kinds.__name__]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}: {self.log()[-3000:]}")
            if self.control.control.ping(destination=[self.name], timeout=0.5):
                return self
        raise TimeoutError(f"worker not ready: {self.log()[-3000:]}")

    def active(self) -> list[dict[str, Any]]:
        """The tasks this worker is executing now."""
        replies = self.control.control.inspect(destination=[self.name], timeout=1.0).active() or {}
        return list(replies.get(self.name, []))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL to the whole worker: nothing is acknowledged, nothing is handed back."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # warm shutdown: unacknowledged messages go back
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Stack:
    world: World
    server: ServerProcess
    env: dict[str, str]
    queue: str
    control: Celery
    tmp_path: Path
    workers: list[CeleryWorker] = field(default_factory=list)

    def worker(self) -> CeleryWorker:
        worker = CeleryWorker(self.env, self.tmp_path / f"worker-{len(self.workers)}.log", self.control, self.queue)
        self.workers.append(worker)
        return worker.start()

    async def start_worker(self) -> CeleryWorker:
        return await asyncio.to_thread(self.worker)

    def http(self, person: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.server.base_url, headers=self.world[person].headers, timeout=10)

    @property
    def settings(self) -> Settings:
        """The app's settings, for a runner inside the test process."""
        overrides = {"redis_url": REDIS_URL, "job_runner": "celery", "job_queue": self.queue}
        return self.world.settings.model_copy(update=overrides)


@pytest.fixture
def stack(request: pytest.FixtureRequest, world_pg: World, tmp_path: Path) -> Iterator[Stack]:
    """An app instance on the Celery runner; workers are started by the test. Indirect parameters
    override the environment of both."""
    require_redis()
    queue = f"trinity.test.{uuid.uuid4().hex[:12]}"
    env = {
        "TRINITY_DATABASE_URL": world_pg.settings.effective_database_url,
        "TRINITY_REDIS_URL": REDIS_URL,
        "TRINITY_DATA_DIR": str(tmp_path),
        "TRINITY_JOB_RUNNER": "celery",
        "TRINITY_JOB_QUEUE": queue,
        "TRINITY_JOB_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S),
        "TRINITY_JOB_LEASE_S": str(LEASE_S),
        "TRINITY_JOB_RETRY_BACKOFF_S": str(RETRY_BACKOFF_S),
        "TRINITY_JOB_MAX_RETRIES": str(MAX_RETRIES),
        "TRINITY_LOG_LEVEL": "INFO",
        "TRINITY_LOG_JSON": "false",
        **getattr(request, "param", {}),
    }
    control = make_celery_app(Settings(redis_url=REDIS_URL, job_queue=queue))
    server = ServerProcess(env, tmp_path / "server.log")
    stack = Stack(world_pg, server, env, queue, control, tmp_path)
    try:
        server.start()
        yield stack
    finally:
        server.stop()
        for worker in stack.workers:
            worker.stop()
        control.close()
        redis.Redis.from_url(REDIS_URL).delete(queue)


@asynccontextmanager
async def watching(stack: Stack, room: str, person: str = "engineer") -> AsyncIterator[RoomClient]:
    async with RoomClient(stack.server.base_url, room, stack.world[person].token) as client:
        yield client


async def job_frames(
    watcher: RoomClient, job_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 20.0
) -> list[dict[str, Any]]:
    """The job's frames as they arrive, up to and including the first for which `until` holds."""
    deadline = time.monotonic() + timeout
    frames: list[dict[str, Any]] = []
    while not frames or not until(frames[-1]):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"waited {timeout} s; frames so far: {frames}"
        frames.append(
            await watcher.wait_for(lambda f: f["type"] == "job" and f["id"] == job_id, timeout=max(0.1, remaining))
        )
    return frames


def ended(frame: dict[str, Any]) -> bool:
    return frame["state"] in ("succeeded", "failed", "cancelled")


async def start_countdown(http: httpx.AsyncClient, room: str, steps: int, delay_s: float) -> dict[str, Any]:
    body = {"kind": "selftest.countdown", "params": {"steps": steps, "delay_s": delay_s}}
    response = await http.post(f"/api/rooms/{room}/jobs", json=body)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    assert job["state"] == "queued"
    return job


async def test_job_runs_on_a_worker_and_its_progress_reaches_the_room(stack: Stack) -> None:
    room = create_room(stack.world, members={"engineer": "participant"})
    worker = await stack.start_worker()
    async with watching(stack, room) as watcher, stack.http("surgeon") as http:
        job = await start_countdown(http, room, steps=4, delay_s=0.3)
        frames = await job_frames(watcher, job["id"], ended)
        states = [f["state"] for f in frames]
        assert states[0] == "queued" and "running" in states and states[-1] == "succeeded", states
        progress = [f["progress"] for f in frames if f["state"] == "running"]
        assert progress == sorted(progress) and any(0 < p < 1 for p in progress), progress
        assert frames[-1]["result"] == {"steps": 4}
        stored = (await http.get(f"/api/jobs/{job['id']}")).json()
        assert stored["state"] == "succeeded" and stored["attempts"] == 1 and stored["result"] == {"steps": 4}
        assert stored["timings"]["finished_ms"] >= stored["timings"]["started_ms"] >= stored["timings"]["created_ms"]
        assert [j["id"] for j in (await http.get(f"/api/rooms/{room}/jobs")).json()] == [job["id"]]
        failing = (
            await http.post(
                f"/api/rooms/{room}/jobs",
                json={"kind": "selftest.countdown", "params": {"steps": 3, "delay_s": 0.05, "fail_at": 1}},
            )
        ).json()
        last = (await job_frames(watcher, failing["id"], ended))[-1]
        assert last["state"] == "failed" and "asked to fail at step 1" in last["error"]
        assert (await http.get(f"/api/jobs/{failing['id']}")).json()["attempts"] == 1  # not retryable
    assert f"trinity.run_job[{job['id']}] succeeded" in worker.log()  # it ran on the worker


async def test_worker_killed_mid_job_the_job_is_redelivered_and_completes_once(stack: Stack) -> None:
    room = create_room(stack.world, members={"engineer": "participant"})
    first = await stack.start_worker()
    async with watching(stack, room) as watcher, stack.http("surgeon") as http:
        job = await start_countdown(http, room, steps=10, delay_s=0.4)
        before = await job_frames(watcher, job["id"], lambda f: f["state"] == "running" and f["progress"] >= 0.2)
        await asyncio.to_thread(first.kill)
        killed_at = before[-1]["progress"]
        view = (await http.get(f"/api/jobs/{job['id']}")).json()
        assert view["state"] == "running" and view["attempts"] == 1
        await stack.start_worker()  # a restarted (or another) worker gets the job once the visibility timeout passes
        after = await job_frames(watcher, job["id"], ended, timeout=25)
        running = [f for f in after if f["state"] == "running"]
        assert running and running[0]["message"] == "started", after
        progress = [f["progress"] for f in running]
        assert progress == sorted(progress) and progress[-1] > killed_at, progress  # progress goes on
        assert after[-1]["state"] == "succeeded" and after[-1]["result"] == {"steps": 10}
        view = (await http.get(f"/api/jobs/{job['id']}")).json()
        assert view["state"] == "succeeded" and view["attempts"] == 2
        # Once: no further run, frame or change after it succeeded.
        await asyncio.sleep(2)
        assert not [f for f in watcher.drain() if f["type"] == "job" and f["id"] == job["id"]]
        assert (await http.get(f"/api/jobs/{job['id']}")).json() == view


@pytest.mark.parametrize("stack", [{"TRINITY_JOB_VISIBILITY_TIMEOUT_S": "60"}], indirect=True)
async def test_pool_process_killed_mid_job_the_job_is_requeued_at_once(stack: Stack) -> None:
    """Only the process running the job dies (OOM killer, segfault): the job is re-queued at once,
    without waiting for the visibility timeout (60 s here), and runs again from the start."""
    room = create_room(stack.world, members={"engineer": "participant"})
    worker = await stack.start_worker()
    async with watching(stack, room) as watcher, stack.http("surgeon") as http:
        job = await start_countdown(http, room, steps=6, delay_s=0.3)
        await job_frames(watcher, job["id"], lambda f: f["state"] == "running" and f["progress"] > 0)
        active = await asyncio.to_thread(worker.active)
        assert [t["id"] for t in active] == [job["id"]]
        os.kill(active[0]["worker_pid"], signal.SIGKILL)
        killed = time.monotonic()
        frames = await job_frames(watcher, job["id"], ended, timeout=15)
        assert time.monotonic() - killed < 10
        assert next(f["message"] for f in frames if f["state"] == "running") == "started"
        assert frames[-1]["state"] == "succeeded"
        view = (await http.get(f"/api/jobs/{job['id']}")).json()
        assert view["state"] == "succeeded" and view["attempts"] == 2
    assert "WorkerLostError" in worker.log()


async def test_job_outliving_the_visibility_timeout_still_runs_once(stack: Stack) -> None:
    """Redis hands a message to another worker when it has been unacknowledged for the visibility
    timeout, even while its worker still runs the job: the second delivery must not run it again."""
    room = create_room(stack.world, members={"engineer": "participant"})
    workers = await asyncio.gather(stack.start_worker(), stack.start_worker())
    async with watching(stack, room) as watcher, stack.http("surgeon") as http:
        job = await start_countdown(http, room, steps=14, delay_s=0.5)  # 7 s > VISIBILITY_S + one sweep
        frames = await job_frames(watcher, job["id"], ended, timeout=20)
        assert [f["state"] for f in frames].count("succeeded") == 1 and frames[-1]["state"] == "succeeded"
        progress = [f["progress"] for f in frames if f["state"] == "running"]
        assert progress == sorted(progress), progress  # one run from start to end, never restarted
        view = (await http.get(f"/api/jobs/{job['id']}")).json()
        assert view["state"] == "succeeded" and view["attempts"] == 1
        await asyncio.sleep(LEASE_S + 1)  # the redelivered copy comes back after the lease, finds it done
        assert (await http.get(f"/api/jobs/{job['id']}")).json() == view
        assert not [f for f in watcher.drain() if f["type"] == "job" and f["id"] == job["id"]]
    received = [w.log().count(f"trinity.run_job[{job['id']}] received") for w in workers]
    assert sum(received) >= 2, received  # it was delivered twice


async def test_job_cancelled_from_the_room_stops_its_worker_within_five_seconds(stack: Stack) -> None:
    room = create_room(stack.world, members={"engineer": "participant"})
    worker = await stack.start_worker()
    async with watching(stack, room) as watcher, stack.http("surgeon") as http:
        job = await start_countdown(http, room, steps=100, delay_s=0.5)
        await job_frames(watcher, job["id"], lambda f: f["state"] == "running" and f["progress"] > 0)
        active = await asyncio.to_thread(worker.active)
        assert [t["id"] for t in active] == [job["id"]]
        pid = active[0]["worker_pid"]
        async with stack.http("engineer") as other:
            assert (await other.post(f"/api/jobs/{job['id']}/cancel")).status_code == 403
        started = time.monotonic()
        response = await http.post(f"/api/jobs/{job['id']}/cancel")
        assert response.status_code == 200 and response.json()["state"] == "cancelled"
        heard = await job_frames(watcher, job["id"], ended, timeout=5)
        assert heard[-1]["state"] == "cancelled" and heard[-1]["message"] == "cancelled by Surgeon"
        while process_running(pid) or await asyncio.to_thread(worker.active):
            assert time.monotonic() - started < 5, "the job's worker process still runs"
            await asyncio.sleep(0.1)
        stopped = (await http.get(f"/api/jobs/{job['id']}")).json()
        assert stopped["state"] == "cancelled" and stopped["progress"] < 1
        await asyncio.sleep(1.5)
        assert (await http.get(f"/api/jobs/{job['id']}")).json() == stopped  # progress no longer moves
        assert not [f for f in watcher.drain() if f["type"] == "job" and f["id"] == job["id"]]
        assert (await http.post(f"/api/jobs/{job['id']}/cancel")).json()["error"]["code"] == "conflict"
        # The worker's only slot is free again.
        following = await start_countdown(http, room, steps=1, delay_s=0)
        assert (await job_frames(watcher, following["id"], ended, timeout=10))[-1]["state"] == "succeeded"


async def test_same_idempotency_key_gives_the_same_job(stack: Stack) -> None:
    room = create_room(stack.world)
    await stack.start_worker()
    async with stack.http("surgeon") as http:
        body = {"kind": "selftest.countdown", "params": {"steps": 1, "delay_s": 0}, "idempotency_key": "cut-42"}
        first, second = await asyncio.gather(
            http.post(f"/api/rooms/{room}/jobs", json=body), http.post(f"/api/rooms/{room}/jobs", json=body)
        )
        assert first.json()["id"] == second.json()["id"]
        for _ in range(100):
            view = (await http.get(f"/api/jobs/{first.json()['id']}")).json()
            if view["state"] == "succeeded":
                break
            await asyncio.sleep(0.1)
        assert view["state"] == "succeeded" and view["attempts"] == 1
        again = (await http.post(f"/api/rooms/{room}/jobs", json=body)).json()
        assert again["id"] == view["id"] and again["state"] == "succeeded"
        assert len((await http.get(f"/api/rooms/{room}/jobs")).json()) == 1


async def test_retries_with_backoff_and_time_limits_through_the_runner(stack: Stack) -> None:
    """The runner API used directly (submit, get), with job kinds only the tests register."""
    room = create_room(stack.world)
    await stack.start_worker()
    db = Database(stack.settings)
    bus = RedisBus(REDIS_URL, "test-instance")
    await bus.start()
    hubs = Hubs(db=db, bus=bus, settings=stack.settings, metrics=Metrics())  # publishes as an app instance does
    runner = make_celery_runner(stack.settings, db, hubs.publish)
    try:
        surgeon = stack.world["surgeon"].id

        def spec(kind: str, **params: Any) -> JobSpec:
            return JobSpec(kind=kind, params=params, submitted_by=surgeon, room_id=room)

        started = time.monotonic()
        recovers = await runner.submit(spec("selftest.flaky", fail_times=2, counter=str(stack.tmp_path / "a")))
        gives_up = await runner.submit(spec("selftest.flaky", fail_times=99, counter=str(stack.tmp_path / "b")))
        slow = await runner.submit(spec("selftest.sleepy", seconds=30))
        views = {}
        while len(views) < 3:
            assert time.monotonic() - started < 20, views
            for job_id in (recovers.id, gives_up.id, slow.id):
                view = await runner.get(job_id)
                if view.state in ("succeeded", "failed"):
                    views[job_id] = view
            await asyncio.sleep(0.1)
        ok, failed, timed_out = views[recovers.id], views[gives_up.id], views[slow.id]
        assert ok.state == "succeeded" and ok.attempts == 3 and ok.result == {"runs": 3} and ok.error is None
        waits = (ok.timings["finished_ms"] - ok.timings["created_ms"]) / 1000
        assert waits >= RETRY_BACKOFF_S * (1 + 2)  # 0.5 s, then 1 s
        assert failed.state == "failed" and failed.attempts == 1 + MAX_RETRIES
        assert "the service is away" in (failed.error or "") and f"after {MAX_RETRIES} retries" in (failed.error or "")
        assert timed_out.state == "failed" and timed_out.error == "timed out after 1 s"
        # What the worker published into the room: bus messages on the room's Redis stream.
        entries = redis.Redis.from_url(REDIS_URL).xrange(stream_key(room))
        messages = [decode(fields) for _, fields in entries]
        assert all(m["kind"] == "ephemeral" and m["user"] is None and m["key"] is None for m in messages)
        published = [orjson.loads(m["frame"]) for m in messages]
        states = [state for state, _ in itertools.groupby(f["state"] for f in published if f["id"] == recovers.id)]
        # queued (by the app: the runner here), two failed runs each followed by a wait, the good run.
        assert states == ["queued", "running", "queued", "running", "queued", "running", "succeeded"]
        retrying = [f["message"] for f in published if f["id"] == recovers.id and f["state"] == "queued"][1:]
        assert retrying == ["retrying in 0.5 s", "retrying in 1 s"]
    finally:
        await runner.close()
        await hubs.close()
        await bus.close()
        db.close()


async def test_spool_stays_while_the_job_may_run_again_and_goes_once_it_ends(stack: Stack) -> None:
    """An upload's spool folder (selftest.spooled reads it on every run): kept through a lost pool process
    and retries, removed once the job succeeded, failed or was cancelled."""
    worker = await stack.start_worker()
    db = Database(stack.settings)
    runner = make_celery_runner(stack.settings, db, no_room)
    spool_dir = stack.tmp_path / "spool"

    def spec(name: str, **params: Any) -> JobSpec:
        folder = job_kinds.spooled_input(spool_dir, name)
        return JobSpec("selftest.spooled", {"spool": str(folder), **params}, stack.world["surgeon"].id)

    async def ended_view(job_id: str, timeout_s: float = 20) -> JobView:
        deadline = time.monotonic() + timeout_s
        while (view := await runner.get(job_id)).state not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, view
            await asyncio.sleep(0.1)
        return view

    async def running(job_id: str) -> None:
        deadline = time.monotonic() + 20
        while (await runner.get(job_id)).progress <= 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)

    try:
        lost = await runner.submit(spec("lost", delay_s=3))
        await running(lost.id)
        os.kill((await asyncio.to_thread(worker.active))[0]["worker_pid"], signal.SIGKILL)
        view = await ended_view(lost.id)
        assert view.state == "succeeded" and view.attempts == 2 and view.result == {"bytes": 9}, view
        await wait_spool_empty(spool_dir)

        retried = await runner.submit(spec("retried", fail_times=2, counter=str(stack.tmp_path / "runs")))
        view = await ended_view(retried.id)
        assert view.state == "succeeded" and view.attempts == 3, view
        await wait_spool_empty(spool_dir)

        failing = await runner.submit(spec("failing", fail=True))
        view = await ended_view(failing.id)
        assert view.state == "failed" and "asked to fail" in (view.error or ""), view
        await wait_spool_empty(spool_dir)

        cancelled = await runner.submit(spec("cancelled", delay_s=30))
        await running(cancelled.id)
        assert (await runner.cancel(cancelled.id, "Surgeon")).state == "cancelled"
        assert not (spool_dir / "cancelled").exists()  # removed by the app as it cancels
    finally:
        await runner.close()
        db.close()


async def no_room(_room_id: str, _frame: dict[str, Any]) -> None:
    return None


def test_job_lease_has_one_holder_and_is_taken_from_a_dead_process() -> None:
    require_redis()
    client = redis.Redis.from_url(REDIS_URL)
    job_id = uuid.uuid4().hex
    first, second = JobLease(client, job_id, 1.0), JobLease(client, job_id, 1.0)
    assert first.acquire() and not second.acquire()
    time.sleep(1.5)  # renewed while held
    assert not second.acquire()
    first.release()
    assert second.acquire()
    second.release()
    key = JobLease(client, job_id, 1.0).key
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as alive:
        client.set(key, f"{socket.gethostname()}:{alive.pid}:x", px=10_000)
        assert not JobLease(client, job_id, 1.0).acquire()  # its holder lives
        alive.kill()
    taker = JobLease(client, job_id, 1.0)
    assert taker.acquire()  # its holder is gone: no need to wait for the expiry
    taker.release()
    assert client.get(key) is None


@pytest.mark.parametrize("stack", [{"TRINITY_JOB_UNSENT_SWEEP_S": "1"}], indirect=True)
async def test_job_stored_but_never_sent_is_sent_by_the_sweeper(stack: Stack) -> None:
    """An instance that died between storing a job and sending it to the broker: another sends it."""
    from server.core.job_store import insert_job

    room = create_room(stack.world, members={"engineer": "participant"})
    db = Database(stack.world.settings)
    with db.session() as session:
        spec = JobSpec("selftest.countdown", {"steps": 2, "delay_s": 0.05}, stack.world["surgeon"].id, room)
        record, created = insert_job(session, spec)
    db.close()
    assert created and record.state == "queued"
    await stack.start_worker()
    async with stack.http("surgeon") as http:
        for _ in range(300):
            view = (await http.get(f"/api/jobs/{record.id}")).json()
            if view["state"] == "succeeded":
                break
            await asyncio.sleep(0.1)
        assert view["state"] == "succeeded" and view["attempts"] == 1
    assert redis.Redis.from_url(REDIS_URL).exists(f"trinity:job:{record.id}:sent")
