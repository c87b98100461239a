"""What a job function may use inside its worker process: the settings, the database and the blob store.

Job functions receive only their params; the process they run in is a spawned child of the app
(`LocalJobRunner`, which hands the app's settings over) or a Celery worker (settings from the same
TRINITY_* environment). Both call `configure` once; the database and blob store are opened lazily on
first use and live as long as the process.
"""

from __future__ import annotations

from functools import cache

from server.core.blobs import FilesystemBlobStore
from server.core.db import Database
from server.settings import Settings

_configured: list[Settings] = []
_job: dict[str, str | None] = {}


def configure(settings: Settings) -> None:
    _configured[:] = [settings]
    database.cache_clear()
    blobs.cache_clear()


def settings() -> Settings:
    if not _configured:
        _configured.append(Settings())
    return _configured[0]


@cache
def database() -> Database:
    import server.tables  # noqa: F401 - every table, so foreign keys between domains resolve

    return Database(settings())


@cache
def blobs() -> FilesystemBlobStore:
    store = FilesystemBlobStore(settings().blob_dir)
    store._prepare()
    return store


def set_job(job_id: str, *, room_id: str | None, submitted_by: str) -> None:
    """The running job's identity, for the records it writes (provenance, ingest reports)."""
    _job.clear()
    _job.update(id=job_id, room_id=room_id, submitted_by=submitted_by)


def job() -> dict[str, str | None]:
    return dict(_job)
