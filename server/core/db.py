"""The database: one engine per process, SQLite (embedded) or PostgreSQL (deployment).

Request handlers use short sync sessions in FastAPI's thread pool; the room hot path uses Core
statements through `Database.run_write`, which on SQLite funnels every write through one thread so
writers never fight over SQLite's single lock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from server.settings import Settings

T = TypeVar("T")


def now_ms() -> int:
    return int(time.time() * 1000)


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int = 20, sqlite_synchronous: str = "FULL") -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    url = url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url
    return create_engine(url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True)


class Database:
    def __init__(self, settings: Settings) -> None:
        self.url = settings.effective_database_url
        self.is_sqlite = self.url.startswith("sqlite")
        self.sqlite_synchronous = settings.sqlite_synchronous
        self.engine = make_engine(
            self.url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            sqlite_synchronous=settings.sqlite_synchronous,
        )
        self._writer = ThreadPoolExecutor(max_workers=1 if self.is_sqlite else 4, thread_name_prefix="db-write")
        self._reader = ThreadPoolExecutor(max_workers=4, thread_name_prefix="db-read")

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    async def run_write(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def run_read(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn, *args)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)
        self.engine.dispose()
