"""create_app(settings): wires the edges (routers, WebSocket) to the infrastructure chosen by settings."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from server.accounts.api import router as accounts_router
from server.accounts.models import Site
from server.artifacts.api import router as artifacts_router
from server.artifacts.recordings import store_recording
from server.cases.api import router as cases_router
from server.core import gc_policy, migrate
from server.core.blobs import FilesystemBlobStore
from server.core.bus import EventBus, InMemoryBus
from server.core.bus_redis import RedisBus
from server.core.db import Database
from server.core.errors import TrinityError
from server.core.jobs import JobRunner
from server.core.jobs_local import LocalJobRunner
from server.core.logs import request_context
from server.core.metrics import Metrics
from server.design.api import router as design_router
from server.imaging.api import router as imaging_router
from server.imaging.dicomweb import router as dicomweb_router
from server.imaging.intake import ScpIntake
from server.imaging.slice_service import SliceService
from server.job_kinds import load_all as load_job_kinds
from server.jobs_api import router as jobs_router
from server.ops import router as ops_router
from server.printing import wiring as printing_wiring
from server.record import wiring as record_wiring
from server.rooms.api import router as rooms_router
from server.rooms.hubs import Hubs
from server.rooms.job_effects import JobEffects
from server.rooms.video.wiring import close_video, install_video
from server.rooms.ws import router as ws_router
from server.settings import Settings

log = logging.getLogger("trinity")
WEB_DIST = Path(__file__).resolve().parent.parent / "web" / "dist"


def make_bus(settings: Settings) -> EventBus:
    instance_id = uuid.uuid4().hex[:12]
    if settings.redis_url:
        return RedisBus(settings.redis_url, instance_id)
    return InMemoryBus(instance_id=instance_id)


def site_quota(db: Database, site_id: str) -> int | None:
    """A site's storage quota in bytes (None: unlimited), read when a blob is stored."""
    with db.session() as session:
        site = session.get(Site, site_id)
        return site.storage_quota_bytes if site else 0


def body_limit(settings: Settings, path: str) -> int:
    """Upload endpoints stream to disk and enforce their own limits; everything else is small JSON."""
    if "/imaging/uploads" in path or "/dicom-web/" in path:
        return settings.upload_max_bytes
    if path.endswith("/meshes"):
        return settings.mesh_max_bytes
    if path.endswith("/snapshots"):  # a PNG sent as base64 in JSON
        return settings.snapshot_max_bytes * 4 // 3 + 65536
    return settings.max_request_bytes


def make_job_runner(settings: Settings, db: Database, hubs: Hubs, effects: JobEffects) -> JobRunner:
    if settings.job_runner == "celery":
        from server.core.celery_runner import make_celery_runner  # Celery is imported only when used

        return make_celery_runner(settings, db, hubs.publish)

    async def publish(room_id: str, frame: dict[str, Any]) -> None:
        await hubs.publish(room_id, frame)
        if frame.get("state") == "succeeded":
            effects.nudge()

    return LocalJobRunner(db=db, publish=publish, workers=settings.job_workers, settings=settings)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        load_job_kinds()
        if settings.auto_migrate:
            migrate.upgrade(settings.effective_database_url)
        db = Database(settings)
        if settings.demo:
            from server.demo import seed_demo

            with db.session() as session:
                seed_demo(session)
        bus = make_bus(settings)
        await bus.start()
        metrics = Metrics()
        app.state.db = db
        app.state.bus = bus
        app.state.metrics = metrics
        app.state.blobs = FilesystemBlobStore(settings.blob_dir, quotas=lambda site_id: site_quota(db, site_id))
        await app.state.blobs.start()
        app.state.slices = SliceService(app.state.blobs, settings.slice_cache_bytes)
        app.state.hubs = Hubs(db=db, bus=bus, settings=settings, metrics=metrics)
        await install_video(app, store=store_recording(app))  # app.state.video (None when disabled)
        if isinstance(bus, RedisBus):
            bus.on_reconnect.append(app.state.hubs.resync_all)
        app.state.job_effects = JobEffects(db=db, hubs=app.state.hubs, poll_s=settings.job_effects_poll_s)
        app.state.jobs = make_job_runner(settings, db, app.state.hubs, app.state.job_effects)
        await app.state.jobs.start()
        await app.state.job_effects.start()
        app.state.scp = None
        if settings.dicom_scp_enabled:
            app.state.scp = ScpIntake(settings=settings, db=db, jobs=app.state.jobs)
            await app.state.scp.start()
        gc_policy.install(settings.gc_gen0_threshold, settings.gc_freeze_after)
        full_gc = asyncio.create_task(gc_policy.run_full_collections(settings.gc_full_interval_s))
        log.info("trinity started", extra={"database": "sqlite" if db.is_sqlite else "postgresql"})
        try:
            yield
        finally:
            full_gc.cancel()
            gc_policy.uninstall()
            if app.state.scp is not None:
                await app.state.scp.close()
            await app.state.job_effects.close()
            await app.state.jobs.close()
            await close_video(app)
            await app.state.hubs.close()
            await bus.close()
            db.close()

    app = FastAPI(title="Trinity", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings

    @app.exception_handler(TrinityError)
    async def trinity_error(_request: Request, exc: TrinityError) -> JSONResponse:
        body = {
            "error": {"code": exc.code, "message": exc.message, **({"details": exc.details} if exc.details else {})}
        }
        return JSONResponse(body, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"error": {"code": "invalid", "message": "; ".join(problems)}}, status_code=422)

    @app.middleware("http")
    async def request_scope(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        request_context.set(request_id)
        length = request.headers.get("content-length")
        limit = body_limit(settings, request.url.path)
        if length and length.isdigit() and int(length) > limit:
            message = f"request body is {length} bytes, limit {limit}"
            return JSONResponse({"error": {"code": "too_large", "message": message}}, status_code=413)
        response = await call_next(request)
        response.headers["x-request-id"] = request_id
        metrics = getattr(request.app.state, "metrics", None)
        if metrics is not None:
            metrics.http_requests.labels(method=request.method, status=str(response.status_code)).inc()
        return response

    app.include_router(ops_router)
    app.include_router(accounts_router)
    app.include_router(cases_router)
    app.include_router(rooms_router)
    app.include_router(ws_router)
    app.include_router(jobs_router)
    app.include_router(artifacts_router)
    app.include_router(imaging_router)
    app.include_router(dicomweb_router)
    app.include_router(design_router)
    record_wiring.install(app)
    printing_wiring.install(app)  # the print supervisor starts after the record, stops before it
    _mount_web(app)
    return app


def _mount_web(app: FastAPI) -> None:
    """Serve the built web client at / when it exists (make run builds it)."""
    if not (WEB_DIST / "index.html").exists():
        return
    if (WEB_DIST / "assets").exists():
        app.mount("/assets", StaticFiles(directory=WEB_DIST / "assets"), name="assets")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB_DIST / "index.html")
