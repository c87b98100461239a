"""The record's test helpers: a live server with the record installed (whatever app.py does yet), a
case with a room and artifacts, PNG snapshots, and reading the audit table."""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

import httpx
from PIL import Image

from server.artifacts import store as artifacts
from server.artifacts.models import Artifact
from server.core.db import Database
from server.record import wiring
from server.record.config import RecordConfig
from server.settings import Settings
from tests.support.imaging_flow import create_case
from tests.support.world import LiveServer, World

FAST = RecordConfig(notify_retry_backoff_s=0.05, notify_max_attempts=3)


class RecordServer(LiveServer):
    def __init__(self, settings: Settings, config: RecordConfig = FAST) -> None:
        super().__init__(settings)
        wiring.install(self.app, config)


def png(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


async def room_with_case(http: httpx.AsyncClient, world: World, label: str = "MAND-2026-014") -> tuple[str, str]:
    """A case of site-a and a room showing it, owned by the caller, with the engineer, the observer and
    site B's surgeon (invited) as members."""
    case_id = await create_case(http, label)
    room = (await http.post("/api/rooms", json={"title": "Mandible reconstruction", "case_id": case_id})).json()
    for name, role in (("engineer", "participant"), ("observer", "observer"), ("radiologist", "participant")):
        added = await http.post(f"/api/rooms/{room['id']}/members", json={"user_id": world[name].id, "role": role})
        assert added.status_code == 201, added.text
    invite = (await http.post(f"/api/rooms/{room['id']}/invites", json={"role": "participant"})).json()
    async with httpx.AsyncClient(base_url=str(http.base_url), headers=world["b-surgeon"].headers) as remote:
        assert (await remote.post(f"/api/invites/{invite['token']}/accept")).status_code == 200
    return case_id, room["id"]


def add_artifact(
    live: LiveServer,
    *,
    case_id: str,
    room_id: str,
    kind: str,
    name: str,
    data: bytes,
    lineage_id: str | None = None,
    inputs: list[str] | None = None,
    created_by: str,
    meta: dict[str, Any] | None = None,
) -> Artifact:
    """An artifact version with one file in the live server's blob store (as a design job would store it)."""
    db = Database(live.settings)
    try:
        with db.session() as session:
            site_id = "site-a"
            ref = live.app.state.blobs.put_bytes(data, site_id=site_id)
            fmt = "webm" if kind == "recording" else "stl"
            return artifacts.add_version(
                session,
                case_id=case_id,
                site_id=site_id,
                lineage_id=lineage_id or f"{kind}-{name}",
                kind=kind,
                name=name,
                files={fmt: {"sha256": ref.sha256, "size": ref.size}},
                meta=meta or {},
                provenance={
                    "operation": "guide" if kind == "guide" else "upload",
                    "inputs": [{"artifact_id": i} for i in inputs or []],
                    "parameters": {"thickness_mm": 3.0} if kind == "guide" else {},
                    "libraries": {"trimesh": "4.4", "manifold3d": "3.0"},
                    "user": created_by,
                    "room_id": room_id,
                },
                created_by=created_by,
                room_id=room_id,
            )
    finally:
        db.close()


async def wait_until(predicate: Any, timeout_s: float = 20.0) -> None:
    """Poll a condition (no timing is asserted: the timeout only ends a hung test)."""
    for _ in range(int(timeout_s / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")
