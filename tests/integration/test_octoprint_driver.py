"""The OctoPrint driver against a real OctoPrint 1.11 and its Virtual Printer (see tests/support/octoprint.py).

No timed assertions: waits for events are generous deadlines, never measurements.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from server.printing.drivers.base import (
    BuildVolume,
    PrinterEvent,
    PrinterRejected,
    PrinterState,
    PrinterStatus,
    PrinterUnreachable,
)
from server.printing.drivers.host_link import EventSubscription, HostTimeouts
from server.printing.drivers.octoprint import OctoPrintDriver
from tests.support.octoprint import BUILD_VOLUME_MM, STREAM_PATH, OctoPrintServer, gcode, octoprint_server

pytestmark = pytest.mark.octoprint

WAIT_S = 60.0  # generous: a slow CI machine must not fail these
# Short reconnect delays so a restarted OctoPrint is found again quickly.
FAST = HostTimeouts(request_s=10.0, backoff_initial_s=0.2, backoff_max_s=2.0, ping_interval_s=2.0, ping_timeout_s=5.0)


@pytest.fixture(scope="module")
def octoprint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OctoPrintServer]:
    with octoprint_server(tmp_path_factory.mktemp("octoprint")) as server:
        yield server


@pytest.fixture
async def driver(octoprint: OctoPrintServer) -> AsyncIterator[OctoPrintDriver]:
    await asyncio.to_thread(octoprint.settle)
    printer = OctoPrintDriver(octoprint.url, octoprint.api_key, port="VIRTUAL", timeouts=FAST)
    await printer.connect()
    yield printer
    await printer.close()


def write_gcode(folder: Path, layers: int, feed_mm_min: int = 1200) -> Path:
    path = folder / f"part-{layers}.gcode"
    path.write_text(gcode(layers, feed_mm_min=feed_mm_min))
    return path


async def wait_for(
    events: EventSubscription, wanted: Callable[[PrinterEvent], bool], seen: list[PrinterEvent] | None = None
) -> PrinterEvent:
    """The first event that matches, within WAIT_S; every event read on the way is kept in `seen`."""

    async def scan() -> PrinterEvent:
        async for event in events:
            if seen is not None:
                seen.append(event)
            if wanted(event):
                return event
        raise AssertionError("the event stream ended")

    return await asyncio.wait_for(scan(), WAIT_S)


async def wait_status(driver: OctoPrintDriver, wanted: Callable[[PrinterStatus], bool]) -> PrinterStatus:
    """Poll the REST status until it matches, within WAIT_S (events lead the host's state by a moment)."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not wanted(status := await driver.status()):
        assert asyncio.get_running_loop().time() < deadline, f"status still {status}"
        await asyncio.sleep(0.2)
    return status


def kind(name: str, source: str | None = None) -> Callable[[PrinterEvent], bool]:
    return lambda e: e.kind == name and (source is None or e.detail.get("source") == source)


def printing(event: PrinterEvent) -> bool:
    return event.kind == "progress" and event.status is not None and event.status.state is PrinterState.PRINTING


async def start_long_print(driver: OctoPrintDriver, events: EventSubscription, folder: Path) -> str:
    """A print of minutes (slow feed), started and seen printing: time enough to pause, cancel or kill."""
    name = await driver.upload(write_gcode(folder, layers=40, feed_mm_min=300), "long.gcode")
    await driver.start(name)
    await wait_for(events, printing)
    return name


async def test_connect_opens_the_printer_link_and_reads_state(driver: OctoPrintDriver) -> None:
    status = await driver.status()
    assert status.state is PrinterState.IDLE
    assert status.message == "Operational"
    # The first temperature report follows the link by a moment.
    status = await wait_status(driver, lambda s: {t.name for t in s.temperatures} >= {"tool0", "bed"})
    assert all(t.actual_c > 0 for t in status.temperatures)


async def test_build_volume_comes_from_the_printer_profile(driver: OctoPrintDriver) -> None:
    assert await driver.build_volume() == BuildVolume(*BUILD_VOLUME_MM)


async def test_camera_urls_come_from_octoprint_webcam_settings(driver: OctoPrintDriver) -> None:
    assert f"{driver.base_url}{STREAM_PATH}" in driver.camera_urls()


async def test_a_wrong_api_key_is_rejected_with_octoprint_reason(octoprint: OctoPrintServer) -> None:
    printer = OctoPrintDriver(octoprint.url, "not-a-key", timeouts=FAST)
    with pytest.raises(PrinterRejected, match="403"):
        await printer.connect()
    await printer.close()


async def test_upload_and_start_report_progress_and_layers_until_done(driver: OctoPrintDriver, tmp_path: Path) -> None:
    events = driver.events()
    name = await driver.upload(write_gcode(tmp_path, layers=5), "guide plate.gcode")
    assert name == "guide plate.gcode"  # a space: start() must quote it in the URL
    await driver.start(name)
    seen: list[PrinterEvent] = []
    done = await wait_for(events, kind("done"), seen)

    assert [e.kind for e in seen if e.kind != "progress"][:1] == ["started"]
    progress = [e.status for e in seen if printing(e) and e.status is not None and e.status.progress is not None]
    assert progress, "no progress while printing"
    fractions = [s.progress or 0.0 for s in progress]
    assert fractions == sorted(fractions)
    assert {s.layers for s in progress} == {5}
    layers = [s.layer or 0 for s in progress]
    assert layers == sorted(layers) and 1 <= layers[-1] <= 5
    assert all(s.job_file == name for s in progress)
    assert done.status is not None and done.status.progress == 1.0 and done.detail["path"] == name


async def test_pause_and_resume(driver: OctoPrintDriver, tmp_path: Path) -> None:
    events = driver.events()
    await start_long_print(driver, events, tmp_path)

    await driver.pause()
    paused = await wait_for(events, kind("paused"))
    assert paused.status is not None and paused.status.state is PrinterState.PAUSED
    await wait_status(driver, lambda s: s.state is PrinterState.PAUSED and s.message == "Paused")

    await driver.resume()
    await wait_for(events, kind("resumed"))
    await wait_for(events, printing)
    await driver.cancel()
    await wait_for(events, kind("cancelled"))


async def test_cancel_ends_the_print_and_a_busy_printer_refuses_a_second_start(
    driver: OctoPrintDriver, tmp_path: Path
) -> None:
    events = driver.events()
    name = await start_long_print(driver, events, tmp_path)
    with pytest.raises(PrinterRejected, match="409"):
        await driver.start(name)

    await driver.cancel()
    cancelled = await wait_for(events, lambda e: e.kind in ("cancelled", "failed"))
    assert cancelled.kind == "cancelled" and cancelled.detail["path"] == name
    await wait_status(driver, lambda s: s.state is PrinterState.IDLE)


async def test_injected_printer_error_is_reported_in_octoprint_words(driver: OctoPrintDriver, tmp_path: Path) -> None:
    events = driver.events()
    await start_long_print(driver, events, tmp_path)

    await driver.send_commands(["!!DEBUG:maxtemp_error"])
    seen: list[PrinterEvent] = []
    error = await wait_for(events, kind("error"), seen)
    assert "MAXTEMP triggered" in str(error.detail["error"])
    assert error.status is not None and error.status.state is PrinterState.ERROR
    await wait_for(events, kind("failed"), seen)  # the job died with the printer

    status = await wait_status(driver, lambda s: s.message.startswith("Offline after error"))
    assert status.state is PrinterState.ERROR
    assert status.message.startswith("Offline after error: MAXTEMP triggered")
    with pytest.raises(PrinterRejected, match="409"):  # no new job until a person looks at the printer
        await driver.start("long.gcode")


async def test_killed_octoprint_is_reported_unreachable_and_found_again_after_restart(tmp_path: Path) -> None:
    with octoprint_server(tmp_path) as server:
        printer = OctoPrintDriver(server.url, server.api_key, port="VIRTUAL", timeouts=FAST)
        await printer.connect()
        events = printer.events()
        await start_long_print(printer, events, tmp_path)

        server.kill()
        down = await wait_for(events, kind("disconnected", source="host"))
        assert down.status is not None and down.status.state is PrinterState.OFFLINE
        with pytest.raises(PrinterUnreachable):
            await printer.status()
        with pytest.raises(PrinterUnreachable):
            await printer.pause()

        await asyncio.to_thread(server.start)  # same port, same basedir, same key
        up = await wait_for(events, kind("connected", source="host"))
        assert up.status is not None and up.status.state is PrinterState.IDLE  # printer link reopened
        assert (await printer.status()).state is PrinterState.IDLE
        await printer.close()


async def test_a_host_that_stops_answering_is_reported_unreachable(octoprint: OctoPrintServer) -> None:
    await asyncio.to_thread(octoprint.settle)
    quick = HostTimeouts(request_s=2.0, ping_interval_s=1.0, ping_timeout_s=2.0, backoff_max_s=1.0)
    printer = OctoPrintDriver(octoprint.url, octoprint.api_key, port="VIRTUAL", timeouts=quick)
    await printer.connect()
    events = printer.events()
    octoprint.freeze()
    try:
        down = await wait_for(events, kind("disconnected", source="host"))  # the push channel's ping went unanswered
        assert "push channel lost" in str(down.detail["reason"])
        with pytest.raises(PrinterUnreachable, match="ReadTimeout"):
            await printer.status()
    finally:
        octoprint.thaw()
    await wait_for(events, kind("connected", source="host"))
    assert (await printer.status()).state is PrinterState.IDLE
    await printer.close()
