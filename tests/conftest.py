from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.services import postgres_database
from tests.support.world import LiveServer, World, make_settings, seed_world


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Storage-touching tests run on both embedded SQLite and PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'trinity.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'trinity.db'}"


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> World:
    return seed_world(make_settings(database_url, tmp_path))


@pytest.fixture
def world_sqlite(sqlite_url: str, tmp_path: Path) -> World:
    return seed_world(make_settings(sqlite_url, tmp_path))


@pytest.fixture
async def live(world: World) -> AsyncIterator[LiveServer]:
    async with LiveServer(world.settings) as server:
        yield server


@pytest.fixture
async def live_sqlite(world_sqlite: World) -> AsyncIterator[LiveServer]:
    async with LiveServer(world_sqlite.settings) as server:
        yield server
