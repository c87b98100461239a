"""The simulated printer, driven like a real host: whole prints of every technology with their events,
pause, resume and cancel, planned and injected failures, and a camera picture of the current layer."""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trimesh
from PIL import Image

from server.printing.contours import layer_stack
from server.printing.drivers.base import PrinterDriver, PrinterEvent, PrinterRejected, PrinterState, PrinterUnreachable
from server.printing.drivers.sim_program import PART
from server.printing.drivers.simulator import SimFailure, SimSettings, SimulatedPrinter
from server.printing.fleet import PrinterSpec, Technology
from tests.unit.printing.parts import printer

FAST = 2000.0  # simulated seconds per real second: a 2 s layer takes a millisecond
SPECS = {
    Technology.FDM: printer("fdm-01", Technology.FDM, (180, 180, 180), "pla"),
    Technology.SLA: printer("sla-01", Technology.SLA, (120, 68, 150), "resin_biocompatible"),
    Technology.METAL: printer("met-01", Technology.METAL, (100, 100, 100), "ti6al4v"),
    Technology.CERAMIC: printer("cer-01", Technology.CERAMIC, (76, 43, 150), "hydroxyapatite"),
    Technology.BIO: printer("bio-01", Technology.BIO, (130, 90, 60), "bioink_gelma", nozzle_mm=0.41),
}


def gcode_file(folder: Path, layers: int = 12) -> Path:
    """PrusaSlicer-style G-code: a 20 mm square extruded on every layer."""
    lines = ["; generated for the simulator test", "G28", "G92 E0"]
    e = 0.0
    for n in range(layers):
        lines += [";LAYER_CHANGE", f";Z:{0.2 * (n + 1):.1f}", f"G1 Z{0.2 * (n + 1):.1f} F600", "G1 X80 Y80 F6000"]
        for x, y in ((100, 80), (100, 100), (80, 100), (80, 80)):
            e += 0.8
            lines.append(f"G1 X{x} Y{y} E{e:.3f} F1800")
    path = folder / "square.gcode"
    path.write_text("\n".join(lines) + "\n")
    return path


def sl1_file(folder: Path, layers: int = 8) -> Path:
    """An SL1 archive as PrusaSlicer writes it: config.ini and one mask image per layer."""
    path = folder / "plate.sl1"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.ini", f"layerHeight = 0.05\nnumFast = {layers}\nnumSlow = 0\nprintTime = 100\n")
        for n in range(layers):
            mask = Image.new("L", (240, 136), 0)
            mask.paste(255, (100, 50, 140, 86))
            out = io.BytesIO()
            mask.save(out, format="PNG")
            archive.writestr(f"plate{n:05d}.png", out.getvalue())
    return path


def stack_file(folder: Path, layer_mm: float) -> Path:
    mesh = trimesh.creation.box(extents=(20.0, 10.0, 3.0))
    mesh.apply_translation((30.0, 20.0, 1.5))
    path = folder / "part.layers.json"
    path.write_bytes(layer_stack(mesh, layer_mm).to_json())
    return path


def print_file(technology: Technology, folder: Path, spec: PrinterSpec) -> Path:
    if technology is Technology.FDM:
        return gcode_file(folder)
    if technology is Technology.SLA:
        return sl1_file(folder)
    return stack_file(folder, 0.5)  # thick layers: six of them


async def until(events: AsyncIterator[PrinterEvent], *kinds: str) -> list[PrinterEvent]:
    """Events up to and including the first of `kinds`."""
    seen = []
    async for event in events:
        seen.append(event)
        if event.kind in kinds:
            return seen
    raise AssertionError(f"events ended before {kinds}: {[e.kind for e in seen]}")


@pytest.fixture
async def fdm(tmp_path: Path) -> AsyncIterator[SimulatedPrinter]:
    sim = SimulatedPrinter(SPECS[Technology.FDM], SimSettings(layer_s=2.0, speed=FAST), files_dir=tmp_path / "host")
    (tmp_path / "host").mkdir()
    await sim.connect()
    yield sim
    await sim.close()


@pytest.mark.parametrize("technology", list(Technology))
async def test_a_whole_print_of_every_technology_with_its_events(technology: Technology, tmp_path: Path) -> None:
    spec = SPECS[technology]
    sim = SimulatedPrinter(spec, SimSettings(layer_s=2.0, speed=FAST))
    driver: PrinterDriver = sim  # it is a PrinterDriver
    await driver.connect()
    assert (await driver.status()).state is PrinterState.IDLE
    assert await driver.build_volume() == spec.build_volume
    events = driver.events()
    local = print_file(technology, tmp_path, spec)
    name = await driver.upload(local, f"job-1-{technology.value}{local.suffix}")
    await driver.start(name)
    seen = await until(events, "done", "failed", "error")
    kinds = [e.kind for e in seen]
    layers = seen[0].status.layers if seen[0].status else None
    assert layers is not None and layers >= 3
    assert kinds == ["started", *["progress"] * layers, "done"]
    assert [e.status.layer for e in seen if e.kind == "progress" and e.status] == list(range(1, layers + 1))
    final = await driver.status()
    assert final.state is PrinterState.IDLE and final.progress == 1.0 and final.job_file == name
    await driver.close()


async def test_pause_resume_and_cancel(fdm: SimulatedPrinter, tmp_path: Path) -> None:
    events = fdm.events()
    await fdm.start(await fdm.upload(gcode_file(tmp_path, layers=40), "long.gcode"))
    await until(events, "progress")
    await fdm.pause()
    paused = await until(events, "paused")
    at_pause = (await fdm.status()).layer
    assert paused[-1].status and paused[-1].status.state is PrinterState.PAUSED
    await asyncio.sleep(0.05)  # many layers' worth of simulated time: none may be printed while paused
    assert (await fdm.status()).layer in (at_pause, (at_pause or 0) + 1)  # at most the layer under way
    with pytest.raises(PrinterRejected, match="not idle"):
        await fdm.start("long.gcode")
    await fdm.resume()
    await until(events, "resumed")
    await until(events, "progress")
    await fdm.cancel()
    cancelled = await until(events, "cancelled")
    status = await fdm.status()
    assert status.state is PrinterState.IDLE and (status.layer or 0) < 40
    assert cancelled[-1].detail == {"message": "cancelled by the operator"}
    with pytest.raises(PrinterRejected, match="nothing to cancel"):
        await fdm.cancel()
    await fdm.start("long.gcode")  # the printer takes the next job
    assert (await fdm.status()).state is PrinterState.PRINTING


async def test_a_planned_print_failure(tmp_path: Path) -> None:
    settings = SimSettings(layer_s=2.0, speed=FAST, failure=SimFailure(fail_at_layer=5))
    sim = SimulatedPrinter(SPECS[Technology.FDM], settings)
    await sim.connect()
    events = sim.events()
    await sim.start(await sim.upload(gcode_file(tmp_path), "a.gcode"))
    seen = await until(events, "done", "failed")
    assert seen[-1].kind == "failed" and "came off the build plate" in str(seen[-1].detail["message"])
    status = await sim.status()
    assert status.state is PrinterState.IDLE and status.layer == 5
    await sim.close()


async def test_a_printer_error_stops_it_until_reconnected(tmp_path: Path) -> None:
    settings = SimSettings(layer_s=2.0, speed=FAST, failure=SimFailure(error_at_layer=3))
    sim = SimulatedPrinter(SPECS[Technology.FDM], settings)
    await sim.connect()
    events = sim.events()
    await sim.start(await sim.upload(gcode_file(tmp_path), "a.gcode"))
    seen = await until(events, "done", "error")
    assert seen[-1].kind == "error"
    status = await sim.status()
    assert status.state is PrinterState.ERROR and status.message.startswith("Offline after error")
    with pytest.raises(PrinterRejected, match="not idle: Offline after error"):
        await sim.start("a.gcode")
    await sim.connect()
    assert (await sim.status()).state is PrinterState.IDLE
    await sim.close()


async def test_an_injected_error_aborts_the_print(fdm: SimulatedPrinter, tmp_path: Path) -> None:
    events = fdm.events()
    await fdm.start(await fdm.upload(gcode_file(tmp_path, layers=40), "a.gcode"))
    await until(events, "progress")
    fdm.inject_error("Error: Heating failed, system stopped! Heater_ID: bed")
    seen = await until(events, "error")
    assert seen[-1].detail == {"message": "Error: Heating failed, system stopped! Heater_ID: bed"}
    layer = (await fdm.status()).layer
    await asyncio.sleep(0.02)
    assert (await fdm.status()).layer == layer  # the print task is gone


async def test_an_unreachable_host_goes_silent_and_comes_back_mid_print(tmp_path: Path) -> None:
    failure = SimFailure(unreachable_at_layer=3, unreachable_for_s=10.0)  # 5 layers of 2 s
    sim = SimulatedPrinter(SPECS[Technology.FDM], SimSettings(layer_s=2.0, speed=200.0, failure=failure))
    await sim.connect()
    events = sim.events()
    await sim.start(await sim.upload(gcode_file(tmp_path, layers=30), "a.gcode"))
    seen = await until(events, "disconnected")
    assert [e.status.layer for e in seen if e.kind == "progress" and e.status] == [1, 2, 3]
    with pytest.raises(PrinterUnreachable):
        await sim.status()
    with pytest.raises(PrinterUnreachable):
        await sim.pause()
    back = await until(events, "connected")
    assert back[-1].status is not None and back[-1].status.state is PrinterState.PRINTING
    assert (back[-1].status.layer or 0) > 3  # the printer went on printing while its host was silent
    rest = await until(events, "done")
    assert rest[-1].kind == "done"
    await sim.close()


async def test_go_unreachable_until_told_otherwise(fdm: SimulatedPrinter) -> None:
    events = fdm.events()
    fdm.go_unreachable()
    assert [e.kind for e in await until(events, "disconnected")] == ["disconnected"]
    with pytest.raises(PrinterUnreachable):
        await fdm.connect()
    fdm.come_back()
    assert (await until(events, "connected"))[-1].status is not None
    await fdm.connect()


@pytest.mark.parametrize("technology", [Technology.FDM, Technology.SLA, Technology.METAL])
async def test_the_camera_shows_the_current_layer(technology: Technology, tmp_path: Path) -> None:
    spec = SPECS[technology]
    sim = SimulatedPrinter(spec, SimSettings(layer_s=2.0, speed=FAST))
    await sim.connect()
    empty = Image.open(io.BytesIO(sim.snapshot_png()))
    assert max(empty.size) == 320 and PART not in {c for _, c in empty.getcolors(1 << 16) or []}
    events = sim.events()
    local = print_file(technology, tmp_path, spec)
    await sim.start(await sim.upload(local, f"part{local.suffix}"))
    await until(events, "done")
    image = Image.open(io.BytesIO(sim.snapshot_png())).convert("RGB")
    assert 100 <= max(image.size) <= 320
    colors = dict((c, n) for n, c in image.getcolors(1 << 16) or [])
    assert colors.get(PART, 0) > 20  # the part's layer is drawn
    await sim.close()


async def test_uploads_a_printer_cannot_print_are_rejected(tmp_path: Path) -> None:
    sla = SimulatedPrinter(SPECS[Technology.SLA], SimSettings(speed=FAST))
    await sla.connect()
    with pytest.raises(PrinterRejected, match="cannot print G-code"):
        await sla.upload(gcode_file(tmp_path), "a.gcode")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(PrinterRejected, match="unsupported print file"):
        await sla.upload(tmp_path / "notes.txt", "notes.txt")
    with pytest.raises(PrinterRejected, match="not found"):
        await sla.start("missing.sl1")
    assert sla.camera_urls() == []
    await sla.close()
    assert [e async for e in sla.events()] == []  # closed: no more events
