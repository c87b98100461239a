"""The Moonraker driver against a real Moonraker 0.11 without Klipper (see tests/support/moonraker.py):
everything but the print path works; the print path is refused with Moonraker's reason."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from server.printing.drivers.base import PrinterEvent, PrinterRejected, PrinterState, PrinterUnreachable
from server.printing.drivers.host_link import EventSubscription, HostTimeouts
from server.printing.drivers.moonraker import MoonrakerDriver
from tests.support.moonraker import MOONRAKER_VERSION, STREAM_PATH, MoonrakerServer, moonraker_server
from tests.support.octoprint import gcode

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


async def test_history_lists_past_jobs(driver: MoonrakerDriver) -> None:
    assert await driver.history() == []  # nothing ever printed: Klipper was never there


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
