"""The Moonraker driver against a real Moonraker 0.11 without Klipper (see tests/support/moonraker.py):
connect, upload, the job queue and the print history work; the print path is refused with Moonraker's
reason. And a Moonraker printer in the app's fleet: connected, shown with Klipper's state, jobs wait for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from server.printing.drivers.base import PrinterEvent, PrinterRejected, PrinterState, PrinterUnreachable
from server.printing.drivers.host_link import EventSubscription, HostTimeouts
from server.printing.drivers.moonraker import MoonrakerDriver
from server.rooms.client import RoomClient
from tests.support.moonraker import MOONRAKER_VERSION, STREAM_PATH, MoonrakerServer, moonraker_server
from tests.support.octoprint import gcode
from tests.support.printing import Frames, PrintingServer, add_printer, maker_room, new_case, small_bone, upload_part
from tests.support.world import World

pytestmark = pytest.mark.moonraker

WAIT_S = 60.0  # generous deadlines, never measurements
FAST = HostTimeouts(request_s=10.0, backoff_initial_s=0.2, backoff_max_s=2.0, ping_interval_s=2.0, ping_timeout_s=5.0)


@pytest.fixture(scope="module")
def moonraker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MoonrakerServer]:
    with moonraker_server(tmp_path_factory.mktemp("moonraker")) as server:
        yield server


@pytest.fixture
async def driver(moonraker: MoonrakerServer) -> AsyncIterator[MoonrakerDriver]:
    printer = MoonrakerDriver(moonraker.url, moonraker.api_key, timeouts=FAST)
    await printer.connect()
    yield printer
    await printer.close()


async def upload(driver: MoonrakerDriver, folder: Path, name: str) -> str:
    path = folder / name
    path.write_text(gcode(layers=3))
    return await driver.upload(path, name)


async def wait_for(events: EventSubscription, wanted: Callable[[PrinterEvent], bool]) -> PrinterEvent:
    async def scan() -> PrinterEvent:
        async for event in events:
            if wanted(event):
                return event
        raise AssertionError("the event stream ended")

    return await asyncio.wait_for(scan(), WAIT_S)


async def test_connect_reads_server_info_and_reports_klipper_absent(driver: MoonrakerDriver) -> None:
    info = await driver.server_info()
    assert info["moonraker_version"].startswith(MOONRAKER_VERSION.rsplit(".", 1)[0])
    assert info["klippy_connected"] is False
    status = await driver.status()
    assert status.state is PrinterState.OFFLINE
    assert status.message == "Klippy Host not connected"
    assert await driver.build_volume() is None  # Klipper's axis limits are unknown without Klipper
    assert f"{driver.base_url}{STREAM_PATH}" in driver.camera_urls()


async def test_a_missing_api_key_is_rejected(moonraker: MoonrakerServer) -> None:
    printer = MoonrakerDriver(moonraker.url, timeouts=FAST)
    with pytest.raises(PrinterRejected, match="Unauthorized"):
        await printer.connect()
    await printer.close()


async def test_upload_then_list(driver: MoonrakerDriver, tmp_path: Path) -> None:
    name = await upload(driver, tmp_path, "anatomical-model.gcode")
    assert name == "anatomical-model.gcode"
    files = {f.path: f for f in await driver.list_files()}
    assert files[name].size_bytes == len(gcode(layers=3).encode())


async def test_enqueue_into_the_job_queue_is_told_live(driver: MoonrakerDriver, tmp_path: Path) -> None:
    name = await upload(driver, tmp_path, "guide-plate.gcode")
    events = driver.events()
    queue = await driver.enqueue([name])
    assert name in [job.filename for job in queue.jobs]
    told = await wait_for(events, lambda e: e.kind == "queue")
    assert told.detail["action"] == "jobs_added"
    assert name in [job.filename for job in (await driver.job_queue()).jobs]


PAST_JOBS = [  # as a Moonraker that printed them with Klipper left them in its history table, oldest first
    {"filename": "guide.gcode", "status": "completed", "start_time": 1.79e9, "end_time": 1.79e9 + 3600.0,
     "print_duration": 3400.0},
    {"filename": "model.gcode", "status": "cancelled", "start_time": 1.79e9 + 4000.0, "end_time": 1.79e9 + 4500.0,
     "print_duration": 480.0},
    {"filename": "implant.gcode", "status": "in_progress", "start_time": 1.79e9 + 5000.0, "print_duration": 600.0},
]  # fmt: skip


async def test_history_lists_past_jobs_newest_first_and_the_print_moonraker_died_during_as_interrupted(
    tmp_path: Path,
) -> None:
    with moonraker_server(tmp_path) as server:
        printer = MoonrakerDriver(server.url, server.api_key, timeouts=FAST)
        await printer.connect()
        assert await printer.history() == []  # nothing printed yet
        await printer.close()

        server.kill()
        server.record_past_jobs(PAST_JOBS)
        await asyncio.to_thread(server.start)  # Moonraker finds "implant" still in progress: it was interrupted
        printer = MoonrakerDriver(server.url, server.api_key, timeouts=FAST)
        await printer.connect()
        jobs = await printer.history()
        await printer.close()
    assert [(j.job_id, j.filename, j.status) for j in jobs] == [
        ("000003", "implant.gcode", "interrupted"),
        ("000002", "model.gcode", "cancelled"),
        ("000001", "guide.gcode", "completed"),
    ]
    guide = jobs[2]
    assert (guide.start_time, guide.end_time, guide.print_duration_s) == (1.79e9, 1.79e9 + 3600.0, 3400.0)
    assert jobs[0].end_time is None and jobs[0].print_duration_s == 600.0


async def test_the_history_is_paged_newest_first(tmp_path: Path) -> None:
    with moonraker_server(tmp_path) as server:
        server.kill()
        server.record_past_jobs(PAST_JOBS[:2])
        await asyncio.to_thread(server.start)
        printer = MoonrakerDriver(server.url, server.api_key, timeouts=FAST)
        await printer.connect()
        newest = await printer.history(limit=1)
        await printer.close()
    assert [j.filename for j in newest] == ["model.gcode"]


async def test_print_start_is_refused_because_klipper_is_absent(driver: MoonrakerDriver, tmp_path: Path) -> None:
    name = await upload(driver, tmp_path, "implant.gcode")
    with pytest.raises(PrinterRejected, match="Klippy Host not connected"):
        await driver.start(name)
    with pytest.raises(PrinterRejected, match="Klippy Host not connected"):
        await driver.pause()


async def test_killed_moonraker_is_reported_unreachable_and_found_again_after_restart(tmp_path: Path) -> None:
    with moonraker_server(tmp_path) as server:
        printer = MoonrakerDriver(server.url, server.api_key, timeouts=FAST)
        await printer.connect()
        events = printer.events()

        server.kill()
        down = await wait_for(events, lambda e: e.kind == "disconnected" and e.detail.get("source") == "host")
        assert down.status is not None and down.status.state is PrinterState.OFFLINE
        with pytest.raises(PrinterUnreachable):
            await printer.status()

        await asyncio.to_thread(server.start)  # same port and data path: same API key
        up = await wait_for(events, lambda e: e.kind == "connected" and e.detail.get("source") == "host")
        assert up.status is not None and up.status.message == "Klippy Host not connected"
        await printer.close()


KEY_VARIABLE = "TRINITY_PRINTER_TEST_MOONRAKER_KEY"


async def test_a_moonraker_printer_joins_the_fleet_shows_klippers_state_and_jobs_wait_for_it(
    moonraker: MoonrakerServer, world_sqlite: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = world_sqlite
    monkeypatch.setenv(KEY_VARIABLE, moonraker.api_key)  # the printer row holds only env:<name>
    async with (
        PrintingServer(world.settings) as live,
        live.http(world["technician"]) as tech,
        RoomClient(live.base_url, maker_room(world), world["observer"].token) as room,
    ):
        frames = Frames(room)
        connection = {"base_url": moonraker.url, "api_key_ref": f"env:{KEY_VARIABLE}", "reconnect_max_s": 2.0}
        added = await add_printer(tech, "voron", driver="moonraker", connection=connection)
        assert "api_key_ref" not in added["connection"] and added["connection"]["has_api_key"] is True

        shown = await frames.until(
            lambda f: f["type"] == "printer" and f["id"] == "voron" and f["message"] == "Klippy Host not connected"
        )
        assert shown["state"] == "offline"  # Moonraker answers; Klipper behind it does not
        assert live.driver("voron") is not None  # connected to the host
        printer = (await tech.get("/api/printers/voron")).json()
        assert f"{moonraker.url}{STREAM_PATH}" in printer["camera_urls"]

        async with live.http(world["engineer"]) as engineer:
            artifact_id = await upload_part(engineer, await new_case(engineer), small_bone())
        body = {"artifact_id": artifact_id, "part_class": "anatomical_model"}
        job_id = (await tech.post("/api/print-jobs", json=body)).json()["id"]
        waiting = await frames.job(job_id, "ready", event="waiting")
        assert waiting["reason"] == "waiting for voron (offline)"
        assert (await tech.get(f"/api/print-jobs/{job_id}")).json()["preflight"]["printers"]["voron"]["ready"]
