"""Outside services the tests need. A missing one fails the test with how to start it: never a skip."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_URL = os.environ.get("TRINITY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TRINITY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def missing(service: str, how: str) -> None:
    pytest.fail(f"{service} is required by this test and is not reachable: {how}", pytrace=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_admin():  # type: ignore[no-untyped-def]
    import psycopg

    try:
        return psycopg.connect(
            PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True, connect_timeout=5
        )
    except psycopg.OperationalError as exc:
        missing("PostgreSQL at 127.0.0.1:5432", f"{exc}. Start it: bash .ci/services")


@contextmanager
def postgres_database(template: str | None = None) -> Iterator[str]:
    """A fresh PostgreSQL database for one test (empty, or a copy of `template`); dropped afterwards."""
    name = f"trinity_t_{uuid.uuid4().hex[:12]}"
    with _pg_admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with _pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def require_redis() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        missing("Redis at 127.0.0.1:6379", f"{exc}. Start it: bash .ci/services")
