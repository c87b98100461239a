"""Shared fixtures. Storage-touching tests run on SQLite and PostgreSQL; each test gets its own copy
of a database seeded once per session (migrations, sites, users, logins), so tests stay independent
without paying for argon2 hashing and migrations every time."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.orthanc import OrthancServer, orthanc_server
from tests.support.services import postgres_database
from tests.support.world import LiveServer, World, make_settings, seed_world


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, World]:
    folder = tmp_path_factory.mktemp("template-sqlite")
    path = folder / "trinity.db"
    return path, seed_world(make_settings(f"sqlite:///{path}", folder))


@pytest.fixture(scope="session")
def postgres_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, World]]:
    folder = tmp_path_factory.mktemp("template-postgres")
    with postgres_database() as url:
        world = seed_world(make_settings(url, folder))
        yield url.rsplit("/", 1)[1], world


def _copy_world(template: World, database_url: str, data_dir: Path) -> World:
    return World(make_settings(database_url, data_dir), dict(template.people))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """Sites `site-a` (a user of every role) and `site-b`, logged in; on each database backend."""
    if request.param == "sqlite":
        path, template = request.getfixturevalue("sqlite_template")
        shutil.copy(path, tmp_path / "trinity.db")
        yield _copy_world(template, f"sqlite:///{tmp_path / 'trinity.db'}", tmp_path)
    else:
        name, template = request.getfixturevalue("postgres_template")
        with postgres_database(template=name) as url:
            yield _copy_world(template, url, tmp_path)


@pytest.fixture
def world_sqlite(sqlite_template: tuple[Path, World], tmp_path: Path) -> World:
    path, template = sqlite_template
    shutil.copy(path, tmp_path / "trinity.db")
    return _copy_world(template, f"sqlite:///{tmp_path / 'trinity.db'}", tmp_path)


@pytest.fixture
async def live(world: World) -> AsyncIterator[LiveServer]:
    async with LiveServer(world.settings) as server:
        yield server


@pytest.fixture
async def live_sqlite(world_sqlite: World) -> AsyncIterator[LiveServer]:
    async with LiveServer(world_sqlite.settings) as server:
        yield server


@pytest.fixture
def world_pg(postgres_template: tuple[str, World], tmp_path: Path) -> Iterator[World]:
    """The seeded world on its own PostgreSQL database (for tests that run several server processes)."""
    name, template = postgres_template
    with postgres_database(template=name) as url:
        yield _copy_world(template, url, tmp_path)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """A private Orthanc PACS with DICOMweb for the whole session (tests upload their own studies)."""
    with orthanc_server(tmp_path_factory.mktemp("orthanc")) as server:
        yield server
