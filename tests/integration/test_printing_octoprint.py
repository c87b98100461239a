"""Printing through the real app to a real OctoPrint 1.11 and its Virtual Printer (tests/support/octoprint.py):
a guide designed by the design package, approved in a plan, goes as a fit-check copy (PLA on FDM) through
preflight, PrusaSlicer (G-code), upload, start and live progress in the maker room until done, while the
clinical guide is refused (it needs biocompatible resin); pause, resume, cancel; an injected printer error;
OctoPrint killed mid-print.

The virtual printer's ambient temperature is set above PLA's, so the sliced G-code's M190/M109 heat-up
waits end at once; `M220`/`M221` (feed and flow rate %) set how fast the virtual printer runs a print. No
timed assertions: every wait is a generous deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from server.rooms.client import RoomClient
from tests.support.octoprint import OctoPrintServer
from tests.support.printing import (
    Frames,
    PrintingServer,
    add_device_artifact,
    add_printer,
    approve_plan,
    design_guide,
    maker_room,
    new_case,
    small_bone,
    upload_part,
)
from tests.support.world import World

pytestmark = pytest.mark.octoprint
KEY_VARIABLE = "TRINITY_PRINTER_TEST_OCTOPRINT_KEY"


class WarmOctoPrint(OctoPrintServer):
    def config(self) -> dict[str, Any]:
        config = super().config()
        config["plugins"]["virtual_printer"]["ambientTemperature"] = 220.0  # hotter than PLA: no heat-up waits
        return config

    def command(self, *commands: str) -> None:
        headers = {"X-Api-Key": self.api_key}
        body = {"commands": list(commands)}
        httpx.post(f"{self.url}/api/printer/command", json=body, headers=headers, timeout=10).raise_for_status()


@pytest.fixture(scope="module")
def octoprint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WarmOctoPrint]:
    server = WarmOctoPrint(tmp_path_factory.mktemp("octoprint-printing"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def live(
    world_sqlite: World, octoprint: WarmOctoPrint, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[PrintingServer]:
    await asyncio.to_thread(octoprint.settle)
    monkeypatch.setenv(KEY_VARIABLE, octoprint.api_key)  # the printer row holds only env:<name>
    async with PrintingServer(world_sqlite.settings) as server:
        yield server


class Bench:
    """A maker room, the OctoPrint printer, and a 10 mm bone model uploaded into a case."""

    def __init__(self, tech: httpx.AsyncClient, frames: Frames, artifact_id: str) -> None:
        self.tech = tech
        self.frames = frames
        self.artifact_id = artifact_id

    async def queue(self) -> str:
        body = {"artifact_id": self.artifact_id, "part_class": "anatomical_model"}
        response = await self.tech.post("/api/print-jobs", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


async def bench(
    live: PrintingServer,
    world: World,
    octoprint: WarmOctoPrint,
    room: RoomClient,
    tech: httpx.AsyncClient,
    *,
    feed_percent: int,
) -> Bench:
    frames = await octoprint_printer(octoprint, room, tech, feed_percent=feed_percent)
    async with live.http(world["engineer"]) as engineer:
        case_id = await new_case(engineer)
        artifact_id = await upload_part(engineer, case_id, small_bone(10.0))
    return Bench(tech, frames, artifact_id)


async def octoprint_printer(
    octoprint: WarmOctoPrint, room: RoomClient, tech: httpx.AsyncClient, *, feed_percent: int
) -> Frames:
    """The OctoPrint printer "octo" in the fleet, idle in the maker room, running at `feed_percent`."""
    frames = Frames(room)
    connection = {
        "base_url": octoprint.url,
        "api_key_ref": f"env:{KEY_VARIABLE}",
        "port": "VIRTUAL",
        "reconnect_max_s": 2.0,
    }
    printer = await add_printer(tech, "octo", driver="octoprint", connection=connection)
    assert printer["connection"] == {
        "base_url": octoprint.url,
        "port": "VIRTUAL",
        "reconnect_max_s": 2.0,
        "has_api_key": True,
    }
    await frames.printer("octo", "idle")
    # The virtual printer's speed, as a % of the sliced feed (and extrusion) rates.
    octoprint.command(f"M220 S{feed_percent}", f"M221 S{feed_percent}")
    return frames


async def test_a_guide_fit_check_copy_is_sliced_uploaded_and_printed_with_live_progress(
    live: PrintingServer, world_sqlite: World, octoprint: WarmOctoPrint
) -> None:
    world = world_sqlite
    async with (
        live.http(world["technician"]) as tech,
        live.http(world["surgeon"]) as surgeon,
        RoomClient(live.base_url, maker_room(world), world["observer"].token) as room,
    ):
        frames = await octoprint_printer(octoprint, room, tech, feed_percent=2000)
        case_id = await new_case(surgeon)
        mesh = design_guide()
        guide = add_device_artifact(live, case_id=case_id, kind="guide", mesh=mesh, created_by=world["surgeon"].id)
        await approve_plan(surgeon, case_id, [guide.id])

        # The guide itself needs biocompatible resin: the FDM printer cannot make it.
        clinical = await tech.post("/api/print-jobs", json={"artifact_id": guide.id, "part_class": "guide"})
        assert clinical.status_code == 201, clinical.text
        refused = await frames.job(clinical.json()["id"], "refused")
        assert "octo: an FDM printer cannot print a guide: it needs an SLA/DLP resin printer" in refused["reason"]

        # Its fit-check copy in PLA, to try on the bone model before the real one is made, can.
        body = {"artifact_id": guide.id, "part_class": "guide", "purpose": "fit_check"}
        queued = await tech.post("/api/print-jobs", json=body)
        assert queued.status_code == 201, queued.text
        job_id = queued.json()["id"]
        assert queued.json()["purpose"] == "fit_check" and queued.json()["plan_version_id"] is not None
        started = await frames.job(job_id, "printing", event="started")
        assert started["printer_id"] == "octo" and started["purpose"] == "fit_check"
        done = await frames.job(job_id, "done")
        assert done["progress"] == 1.0

        printing = [f for f in frames.of("printer", "octo") if f["state"] == "printing" and f["progress"] is not None]
        assert len(printing) >= 3, "too few progress frames"
        assert [f["progress"] for f in printing] == sorted(f["progress"] for f in printing)
        layers = [f["layer"] for f in printing if f["layer"] is not None]
        assert layers == sorted(layers) and len(set(layers)) >= 2
        total = {f["layers"] for f in printing if f["layers"] is not None}
        job = (await tech.get(f"/api/print-jobs/{job_id}")).json()
        assert total == {job["files"]["octo"]["estimate"]["layers"]}  # PrusaSlicer's ;LAYER_CHANGE count
        assert any({t["name"] for t in f["temperatures"]} >= {"tool0", "bed"} for f in printing)
        assert job["files"]["octo"]["kind"] == "gcode" and job["preflight"]["printers"]["octo"]["ready"]
        assert job["preflight"]["mesh"]["volume_mm3"] == pytest.approx(mesh.volume, rel=1e-6)
        assert job["history"][0]["what"] == "queued" and job["history"][0]["purpose"] == "fit_check"
        assert [h["what"] for h in job["history"]][-2:] == ["started", "done"]
        print_file = (await tech.get(f"/api/artifacts/{job['files']['octo']['artifact_id']}")).json()
        assert "(fit check)" in print_file["name"] and print_file["meta"]["purpose"] == "fit_check"
        await frames.printer("octo", "bed-not-cleared")


async def test_pause_resume_and_cancel_on_octoprint(
    live: PrintingServer, world_sqlite: World, octoprint: WarmOctoPrint
) -> None:
    world = world_sqlite
    async with (
        live.http(world["technician"]) as tech,
        RoomClient(live.base_url, maker_room(world), world["observer"].token) as room,
    ):
        setup = await bench(live, world, octoprint, room, tech, feed_percent=50)
        frames = setup.frames
        job_id = await setup.queue()
        await frames.job(job_id, "printing", event="started")
        assert (await tech.post(f"/api/print-jobs/{job_id}/pause")).status_code == 200
        await frames.job(job_id, "paused", event="paused")
        await frames.printer("octo", "paused")
        assert (await tech.post(f"/api/print-jobs/{job_id}/resume")).status_code == 200
        await frames.job(job_id, "printing", event="resumed")
        assert (await tech.post(f"/api/print-jobs/{job_id}/cancel")).status_code == 200
        await frames.job(job_id, "cancelled")
        await frames.printer("octo", "bed-not-cleared")


async def test_an_injected_printer_error_is_reported_and_pauses_that_printers_queue(
    live: PrintingServer, world_sqlite: World, octoprint: WarmOctoPrint
) -> None:
    world = world_sqlite
    async with (
        live.http(world["technician"]) as tech,
        RoomClient(live.base_url, maker_room(world), world["observer"].token) as room,
    ):
        setup = await bench(live, world, octoprint, room, tech, feed_percent=50)
        frames = setup.frames
        job_id = await setup.queue()
        await frames.job(job_id, "printing", event="started")

        octoprint.command("!!DEBUG:maxtemp_error")
        failed = await frames.job(job_id, "failed")
        assert "printer error" in failed["reason"] and "MAXTEMP" in failed["reason"]
        error = await frames.printer("octo", "error")
        assert "MAXTEMP" in error["message"]
        printer = (await tech.get("/api/printers/octo")).json()
        assert printer["queue_paused"] is True and printer["state"] == "error"

        await asyncio.to_thread(octoprint.relink_printer)  # someone fixed the printer...
        await frames.printer("octo", "bed-not-cleared")
        assert (await tech.post("/api/printers/octo/bed-cleared")).status_code == 200
        second = await setup.queue()
        waiting = await frames.job(second, "ready", event="waiting")  # ...but its queue stays paused
        assert "queue paused" in waiting["reason"]
        assert (await tech.post(f"/api/print-jobs/{second}/cancel")).status_code == 200


async def test_octoprint_killed_mid_print_interrupts_the_job_and_monitoring_resumes(
    live: PrintingServer, world_sqlite: World, octoprint: WarmOctoPrint
) -> None:
    world = world_sqlite
    async with (
        live.http(world["technician"]) as tech,
        RoomClient(live.base_url, maker_room(world), world["observer"].token) as room,
    ):
        setup = await bench(live, world, octoprint, room, tech, feed_percent=50)
        frames = setup.frames
        job_id = await setup.queue()
        await frames.job(job_id, "printing", event="started")

        octoprint.kill()
        offline = await frames.printer("octo", "offline")
        assert "unreachable" in offline["message"]
        interrupted = await frames.job(job_id, "interrupted")
        assert "printer host unreachable" in interrupted["reason"]
        fleet = await tech.get("/api/sites/site-a/fleet")  # the app carries on
        assert fleet.status_code == 200 and fleet.json()["printers"][0]["state"] == "offline"

        await asyncio.to_thread(octoprint.start)  # same port and key: the driver finds it again
        back = await frames.job(job_id, "interrupted", event="monitoring_resumed")
        assert "no longer printing" in back["reason"]
        await frames.printer("octo", "bed-not-cleared")  # what was printed before the outage is on the plate
        history = (await tech.get(f"/api/print-jobs/{job_id}")).json()["history"]
        assert [h["what"] for h in history][-2:] == ["interrupted", "monitoring_resumed"]
