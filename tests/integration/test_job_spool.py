"""A job's spool folder (an upload waiting for its job) goes once the job has ended, whatever the
outcome, and stays while the job may still run again: the embedded runner, in this process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from server.core.db import Database
from server.core.jobs import JobSpec, JobView
from server.core.jobs_local import LocalJobRunner
from tests.support.imaging_flow import wait_spool_empty
from tests.support.job_kinds import spooled_input  # and selftest.spooled
from tests.support.world import World


async def _no_room(_room_id: str, _frame: dict[str, Any]) -> None:
    return None


@asynccontextmanager
async def local_runner(world: World, workers: int = 1) -> AsyncIterator[LocalJobRunner]:
    db = Database(world.settings)
    runner = LocalJobRunner(db=db, publish=_no_room, workers=workers, settings=world.settings)
    await runner.start()
    try:
        yield runner
    finally:
        await runner.close()
        db.close()


def spool(world: World, name: str) -> Path:
    return spooled_input(world.settings.spool_dir, name)


def spec(world: World, folder: Path, **params: Any) -> JobSpec:
    return JobSpec("selftest.spooled", {"spool": str(folder), **params}, world["surgeon"].id)


async def wait_state(runner: LocalJobRunner, job_id: str, *states: str, timeout_s: float = 30) -> JobView:
    deadline = time.monotonic() + timeout_s
    while (view := await runner.get(job_id)).state not in states:
        assert time.monotonic() < deadline, view
        await asyncio.sleep(0.05)
    return view


async def test_spool_is_removed_when_the_job_succeeds_fails_or_is_cancelled(world_sqlite: World) -> None:
    world = world_sqlite
    async with local_runner(world, workers=1) as runner:
        long = await runner.submit(spec(world, spool(world, "long"), delay_s=30))
        await wait_state(runner, long.id, "running")
        waiting = await runner.submit(spec(world, spool(world, "waiting")))  # queued behind the long one
        assert (await runner.cancel(waiting.id, "Surgeon")).state == "cancelled"
        assert not (world.settings.spool_dir / "waiting").exists()
        assert (world.settings.spool_dir / "long").exists()  # still running, still reading it
        await runner.cancel(long.id, "Surgeon")
        await wait_state(runner, long.id, "cancelled")
        await wait_spool_empty(world.settings.spool_dir)

        ok = await runner.submit(spec(world, spool(world, "ok")))
        assert (await wait_state(runner, ok.id, "succeeded", "failed")).result == {"bytes": 9}
        await wait_spool_empty(world.settings.spool_dir)

        failing = await runner.submit(spec(world, spool(world, "failing"), fail=True))
        failed = await wait_state(runner, failing.id, "succeeded", "failed")
        assert failed.state == "failed" and "asked to fail" in (failed.error or "")
        await wait_spool_empty(world.settings.spool_dir)


async def test_spool_stays_for_a_job_the_server_left_running_and_goes_after_its_rerun(world_sqlite: World) -> None:
    world = world_sqlite
    folder = spool(world, "rerun")
    async with local_runner(world) as runner:
        job = await runner.submit(spec(world, folder, delay_s=1.5))
        await wait_state(runner, job.id, "running")
    # The server went away mid-job: the job is still running in the table and runs again at start-up.
    assert folder.exists() and (await _view(world, job.id)).state == "running"
    async with local_runner(world) as restarted:
        done = await wait_state(restarted, job.id, "succeeded", "failed")
        assert done.state == "succeeded" and done.attempts == 2 and done.result == {"bytes": 9}
        await wait_spool_empty(world.settings.spool_dir)


async def _view(world: World, job_id: str) -> JobView:
    from server.core.job_store import load_job, to_view

    db = Database(world.settings)
    try:
        with db.session() as session:
            return to_view(load_job(session, job_id))
    finally:
        db.close()
