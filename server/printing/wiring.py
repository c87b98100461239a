"""How the app takes in printing. `server.app.create_app` calls, after the record's install:

    printing_wiring.install(app)

which includes `ROUTERS` and wraps the app's lifespan: the supervisor starts once app.state.db, .blobs,
.hubs, .jobs (and .video, when it runs) exist, and stops before they close. Or do it by hand:
include `ROUTERS`, `await start(app)` in the lifespan and `await stop(app)` first on shutdown. Also:
- server/job_kinds.py lists "server.printing.tasks" (the job kinds; every worker imports it);
- server/demo.py calls `seed_demo_fleet(session, site_id, maker_room_owner=principal)`;
- settings (TRINITY_*), read with these defaults until server/settings.py has them: see
  `server.printing.config.PrintingConfig` (printing_supervisor, printing_poll_s, printing_progress_write_s,
  printing_lease_s, printing_connect_retry_max_s, printing_secret_env_prefix, printing_secrets_dir,
  printing_slice_timeout_s, printing_slicer_binary).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from server.printing import api
from server.printing.config import PrintingConfig
from server.printing.printer_events import OutcomeHook
from server.printing.supervisor import PrintSupervisor
from server.printing_edges import printers_api, quota_api

ROUTERS = [api.router, printers_api.router, quota_api.router]


def _register_report_source() -> None:
    from server.printing.repository import report_open_jobs
    from server.record.report_data import PRINT_JOB_SOURCES

    if report_open_jobs not in PRINT_JOB_SOURCES:
        PRINT_JOB_SOURCES.append(report_open_jobs)


def outcome_hook(app: Any) -> OutcomeHook:
    """Done and failed prints go to the record: audited, and notified when the record's notifier runs."""

    async def hook(artifact_id: str, print_job_id: str, succeeded: bool, detail: str, printer: str) -> None:
        from server.record import print_hooks

        state = app.state
        if getattr(state, "notifier", None) is not None and getattr(state, "record_config", None) is not None:
            await print_hooks.print_outcome(
                app,
                artifact_id=artifact_id,
                print_job_id=print_job_id,
                succeeded=succeeded,
                detail=detail,
                printer=printer,
            )
            return

        def audit_only() -> None:
            with state.db.session() as db:
                print_hooks.record_print_outcome(
                    db,
                    artifact_id=artifact_id,
                    print_job_id=print_job_id,
                    succeeded=succeeded,
                    detail=detail,
                    printer=printer,
                )

        await state.db.run_write(audit_only)

    return hook


async def start(app: Any) -> PrintSupervisor:
    _register_report_source()  # queued and running prints appear in the consultation report
    import server.printing.tasks  # noqa: F401 - registers printing.prepare and printing.slice here too

    state = app.state
    settings = state.settings
    supervisor = PrintSupervisor(
        db=state.db,
        jobs=state.jobs,
        blobs=state.blobs,
        publish=state.hubs.publish,
        config=PrintingConfig.from_settings(settings),
        data_dir=settings.data_dir,
        redis_url=settings.redis_url,
        on_outcome=outcome_hook(app),
        video_of=lambda: getattr(state, "video", None),  # printer cameras into maker rooms, when video runs
    )
    state.printing = supervisor
    await supervisor.start()
    return supervisor


async def stop(app: Any) -> None:
    supervisor = getattr(app.state, "printing", None)
    if supervisor is not None:
        await supervisor.close()


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    await start(app)
    try:
        yield
    finally:
        await stop(app)


def install(app: Any) -> None:
    """Routers plus the lifespan hook, inside the app's own lifespan (after its start, before its close).
    Installing twice is harmless."""
    if getattr(app.state, "printing_installed", False):
        return
    app.state.printing_installed = True
    for router in ROUTERS:
        app.include_router(router)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def combined(application: Any) -> AsyncIterator[Any]:
        async with inner(application) as state, lifespan(application):
            yield state

    app.router.lifespan_context = combined
