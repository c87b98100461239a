"""How the app takes in the record. In `server.app.create_app`, after the other routers:

    from server.record import wiring as record_wiring
    record_wiring.install(app)

`install` includes `ROUTERS` and runs `lifespan` inside the app's own lifespan (after the database, the
blob store and the hubs exist): it puts `record_config` and the started `notifier` on `app.state`.
Or include `ROUTERS` yourself and call `start(app)` / `await stop(app)` in the lifespan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from server.record import admin_api, audit_api, plans_api, report_api, snapshots
from server.record.config import RecordConfig
from server.record.notify import Notifier

ROUTERS: list[APIRouter] = [plans_api.router, snapshots.router, report_api.router, audit_api.router, admin_api.router]


async def start(app: FastAPI, config: RecordConfig | None = None) -> None:
    config = config or getattr(app.state, "record_config_override", None)
    app.state.record_config = config or RecordConfig.from_settings(app.state.settings)
    app.state.notifier = Notifier(app.state.record_config)
    await app.state.notifier.start()


async def stop(app: FastAPI) -> None:
    await app.state.notifier.close()


@asynccontextmanager
async def lifespan(app: FastAPI, config: RecordConfig | None = None) -> AsyncIterator[None]:
    await start(app, config)
    try:
        yield
    finally:
        await stop(app)


def install(app: FastAPI, config: RecordConfig | None = None) -> None:
    """Routers plus the lifespan hook; `config` overrides the settings (tests). Installing twice (app.py
    and a test) only replaces the config."""
    app.state.record_config_override = config
    if getattr(app.state, "record_installed", False):
        return
    app.state.record_installed = True
    for router in ROUTERS:
        app.include_router(router)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def combined(application: Any) -> AsyncIterator[Any]:
        async with inner(application) as state, lifespan(application):
            yield state

    app.router.lifespan_context = combined
