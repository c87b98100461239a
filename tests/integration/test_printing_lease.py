"""One supervisor at a time: the printing lease on PostgreSQL (advisory lock) and on Redis (SET NX PX)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from server.core.db import Database
from server.printing.supervisor import PostgresLease, RedisLease
from server.settings import Settings
from tests.support.services import REDIS_URL, postgres_database, require_redis


@pytest.mark.postgres
async def test_only_one_instance_holds_the_postgres_lease_until_it_lets_go(tmp_path: Path) -> None:
    with postgres_database() as url:
        first, second = (Database(Settings(database_url=url, data_dir=tmp_path)) for _ in range(2))
        try:
            a, b = PostgresLease(first), PostgresLease(second)
            assert await a.acquire() and await a.held()
            assert not await b.acquire()
            await a.release()  # or the holder dies: PostgreSQL drops its session and the lock
            assert not await a.held()
            assert await b.acquire() and await b.held()
            await b.release()
        finally:
            first.close()
            second.close()


@pytest.mark.multiprocess  # Redis, as for the other tests of several instances
async def test_only_one_instance_holds_the_redis_lease_until_it_lets_go(monkeypatch: pytest.MonkeyPatch) -> None:
    require_redis()
    monkeypatch.setattr("server.printing.supervisor.REDIS_LEASE_NAME", f"printing-test-{uuid.uuid4().hex[:8]}")
    a, b = RedisLease(REDIS_URL, 5.0), RedisLease(REDIS_URL, 5.0)
    assert await a.acquire() and await a.held()
    assert not await b.acquire()
    await a.release()
    assert await b.acquire() and await b.held()
    await b.release()
