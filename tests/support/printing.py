"""The printing tests' helpers: a live server with printing installed (whatever app.py does yet), a small
bone-like part and a guide designed as the design package designs them, printers, meshes and artifacts,
an approved plan, and a maker-room client that collects frames."""

from __future__ import annotations

import asyncio
import functools
import io
from collections.abc import Callable
from typing import Any

import httpx
import manifold3d
import trimesh

from server.artifacts import store as artifacts
from server.artifacts.models import Artifact
from server.core.db import Database
from server.design.guide import GuideParameters, make_guide
from server.design.manifolds import to_trimesh
from server.design.params import SphereRegion, Trajectory
from server.design.phantoms import synthetic_bone
from server.printing import wiring
from server.printing.drivers.base import PrinterDriver
from server.rooms.client import RoomClient
from server.settings import Settings
from tests.support.imaging_flow import create_case
from tests.support.world import PASSWORD, LiveServer, World, create_room

WAIT_S = 120.0  # generous: ends a hung test, never measures one


class PrintingServer(LiveServer):
    """The real app (app.py installs printing; installing it here too would be harmless), and the
    simulators' controls of the running supervisor."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        if not any(getattr(route, "path", "") == "/api/print-jobs" for route in self.app.routes):
            wiring.install(self.app)

    def driver(self, printer_id: str) -> PrinterDriver:
        found = self.app.state.printing.driver(printer_id)
        assert found is not None, f"printer {printer_id} is not connected"
        return found  # type: ignore[no-any-return]


def small_bone(length_mm: float = 16.0) -> trimesh.Trimesh:
    """A dog-bone: a 5 mm shaft between two 7 mm balls, about `length_mm` long (a tiny long bone)."""
    half = length_mm / 2 - 3.5
    shaft = manifold3d.Manifold.cylinder(2 * half, 2.5, 2.5, 32).translate((0.0, 0.0, -half))
    ends = [manifold3d.Manifold.sphere(3.5, 32).translate((0.0, 0.0, z)) for z in (-half, half)]
    bone = manifold3d.Manifold.batch_boolean([shaft, *ends], manifold3d.OpType.Add)
    return to_trimesh(bone.rotate((0.0, 90.0, 0.0)))  # lying along x, as a model on the bench


@functools.cache
def design_guide() -> trimesh.Trimesh:
    """A drill guide designed on the phantom femur by the design package's guide operation (as the design
    and slicing tests make it): about 22 x 25 x 29 mm, 2.4 cm³, one 2.5 mm sleeve."""
    params = GuideParameters(clearance_mm=0.2, thickness_mm=3.0, sleeve_length_mm=14.0, resolution_mm=0.5)
    trajectory = Trajectory((11.0, 0.0, 6.0), (-5.0, 0.0, 6.0), 2.5)
    return make_guide(synthetic_bone(), SphereRegion((11.0, 0.0, 10.0), 11.0), [trajectory], params).meshes["guide"]


def ply_bytes(mesh: trimesh.Trimesh) -> bytes:
    return bytes(mesh.export(file_type="ply"))


async def upload_part(http: httpx.AsyncClient, case_id: str, mesh: trimesh.Trimesh, name: str = "bone.ply") -> str:
    """A mesh into the case over the design upload (stored as PLY, GLB and STL): the artifact id."""
    files = {"file": (name, io.BytesIO(ply_bytes(mesh)), "application/octet-stream")}
    response = await http.post(f"/api/cases/{case_id}/meshes", files=files)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def new_case(http: httpx.AsyncClient, label: str = "PRINT-2026-001") -> str:
    return await create_case(http, label)


def add_device_artifact(
    live: LiveServer, *, case_id: str, kind: str, mesh: trimesh.Trimesh, created_by: str
) -> Artifact:
    """A guide or implant version, stored as a design job would store it (PLY in the blob store, its volume
    in the metadata)."""
    db = Database(live.settings)
    try:
        ref = live.app.state.blobs.put_bytes(ply_bytes(mesh), site_id="site-a")
        with db.session() as session:
            return artifacts.add_version(
                session,
                case_id=case_id,
                site_id="site-a",
                lineage_id=f"{kind}-test",
                kind=kind,
                name=f"test {kind}",
                files={"ply": {"sha256": ref.sha256, "size": ref.size}},
                meta={"volume_mm3": float(mesh.volume), "watertight": bool(mesh.is_watertight)},
                provenance={"operation": kind, "inputs": []},
                created_by=created_by,
                room_id=None,
            )
    finally:
        db.close()


async def approve_plan(surgeon: httpx.AsyncClient, case_id: str, artifact_ids: list[str]) -> str:
    """A consultation room of the case where the surgeon proposes a plan pinning these artifact versions
    and approves it with their password: the record's gate then lets them be printed. The plan's id."""
    room = await surgeon.post("/api/rooms", json={"title": "Plan", "case_id": case_id})
    assert room.status_code == 201, room.text
    room_id = room.json()["id"]
    plan = await surgeon.post(f"/api/rooms/{room_id}/plans", json={"artifact_ids": artifact_ids})
    assert plan.status_code == 201, plan.text
    decision = {"decision": "approved", "password": PASSWORD}
    approved = await surgeon.post(f"/api/rooms/{room_id}/plans/{plan.json()['id']}/decision", json=decision)
    assert approved.status_code == 200, approved.text
    return str(plan.json()["id"])


async def add_printer(http: httpx.AsyncClient, printer_id: str, **fields: Any) -> dict[str, Any]:
    body = {
        "id": printer_id,
        "name": printer_id.upper(),
        "technology": "fdm",
        "build_volume_mm": [220, 215, 250],
        "material": "pla",
        "nozzle_mm": 0.4,
        "layer_height_mm": 0.3,
        "driver": "simulator",
        "connection": {"layer_s": 1.0, "speed": 20.0},
    } | fields
    response = await http.post("/api/printers", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def maker_room(world: World) -> str:
    return create_room(
        world, owner="technician", kind="maker", members={"engineer": "observer", "observer": "observer"}
    )


class Frames:
    """A maker-room client's printer and print_job frames, kept in order, with waits on them."""

    def __init__(self, room: RoomClient) -> None:
        self.room = room
        self.seen: list[dict[str, Any]] = []

    async def until(self, wanted: Callable[[dict[str, Any]], bool], timeout_s: float = WAIT_S) -> dict[str, Any]:
        async def scan() -> dict[str, Any]:
            while True:
                frame = await self.room.next_frame(timeout=timeout_s)
                if frame.get("type") in ("printer", "print_job"):
                    self.seen.append(frame)
                    if wanted(frame):
                        return frame

        return await asyncio.wait_for(scan(), timeout_s)

    async def job(self, job_id: str, *states: str, event: str | None = None) -> dict[str, Any]:
        """The job's newest frame if it already matches, else the next one that does."""

        def wanted(f: dict[str, Any]) -> bool:
            return (
                f["type"] == "print_job"
                and f["id"] == job_id
                and (not states or f["state"] in states)
                and (event is None or f["event"] == event)
            )

        latest = self.of("print_job", job_id)
        return latest[-1] if latest and wanted(latest[-1]) else await self.until(wanted)

    async def printer(self, printer_id: str, *states: str) -> dict[str, Any]:
        """The printer's newest frame if it is already in one of `states`, else the next one that is."""

        def wanted(f: dict[str, Any]) -> bool:
            return f["type"] == "printer" and f["id"] == printer_id and f["state"] in states

        latest = self.of("printer", printer_id)
        return latest[-1] if latest and wanted(latest[-1]) else await self.until(wanted)

    def of(self, kind: str, ident: str) -> list[dict[str, Any]]:
        return [f for f in self.seen if f["type"] == kind and f["id"] == ident]


async def wait_job(
    http: httpx.AsyncClient, job_id: str, *states: str, where: Callable[[dict[str, Any]], bool] | None = None
) -> dict[str, Any]:
    """Poll the REST view until the job is in one of `states` (and `where` holds); a generous deadline."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        job = (await http.get(f"/api/print-jobs/{job_id}")).json()
        if job["state"] in states and (where is None or where(job)):
            return job  # type: ignore[no-any-return]
        assert asyncio.get_running_loop().time() < deadline, f"print job still {job['state']}: {job.get('reason')}"
        await asyncio.sleep(0.1)
