"""A simulated printer of any technology, behind the same `PrinterDriver` interface as the real hosts.

    printer = SimulatedPrinter(spec, SimSettings(speed=600.0, failure=SimFailure(error_at_layer=12)))
    await printer.connect()
    name = await printer.upload(Path("part.gcode"), "part.gcode")
    await printer.start(name)
    async for event in printer.events(): ...      # started, progress (each layer), paused, resumed,
                                                  # done, failed, cancelled, error, disconnected, connected
    png = printer.snapshot_png()                  # the synthetic camera: the current layer from above

It prints layer by layer in simulated time: `layer_s` simulated seconds per layer (a technology
default), run `speed` times faster than real time (600: a 10 s layer takes 1/60 s), so `make run`'s
demo fleet and the edges' tests see whole prints. Failures can be planned (`SimFailure`) or injected
while running (`inject_error`, `go_unreachable`, `fail_at_layer`):
- a failed print (the part came off the plate): `failed`, the printer idle again;
- a printer error (like OctoPrint's "Offline after error"): `error`, state ERROR until `connect()`;
- the host stops answering for a while: every call raises PrinterUnreachable and no events arrive,
  but the print goes on, as a real printer would; when it answers again, `connected` with its status.

Like a real host it knows nothing of beds: after `done` it is IDLE; the supervisor keeps the
printer BED_NOT_CLEARED until an operator confirms. `camera_urls()` is empty: there is no HTTP camera,
the video edge calls `snapshot_png()` to build its track.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from server.printing.drivers.base import (
    BuildVolume,
    PrinterEvent,
    PrinterRejected,
    PrinterState,
    PrinterStatus,
    PrinterUnreachable,
    Temperature,
)
from server.printing.drivers.sim_program import Program, load_program
from server.printing.fleet import PrinterSpec, Technology

DEFAULT_LAYER_S = {
    Technology.FDM: 20.0,
    Technology.SLA: 12.0,
    Technology.METAL: 40.0,
    Technology.CERAMIC: 30.0,
    Technology.BIO: 10.0,
}
ROOM_C = 22.0


@dataclass(frozen=True)
class SimFailure:
    fail_at_layer: int | None = None  # the print fails after this layer (printer fine)
    fail_message: str = "print failed: the part came off the build plate (simulated)"
    error_at_layer: int | None = None  # the printer errors after this layer
    error_message: str = "Offline after error: MAXTEMP triggered (simulated)"
    unreachable_at_layer: int | None = None  # the host stops answering after this layer...
    unreachable_for_s: float = 60.0  # ...for this many simulated seconds


@dataclass(frozen=True)
class SimSettings:
    layer_s: float | None = None  # simulated seconds per layer; None: the technology's default
    speed: float = 1.0  # simulated seconds per real second
    failure: SimFailure = field(default_factory=SimFailure)
    camera_px: int = 320


class SimulatedPrinter:
    def __init__(self, spec: PrinterSpec, settings: SimSettings | None = None, *, files_dir: Path | None = None):
        self.spec = spec
        self.settings = settings or SimSettings()
        self.layer_s = self.settings.layer_s or DEFAULT_LAYER_S[spec.technology]
        self._own_dir = files_dir is None
        self._files_dir = files_dir or Path(tempfile.mkdtemp(prefix=f"sim-{spec.id}-"))
        self._programs: dict[str, Program] = {}
        self._failure = self.settings.failure
        self._state = PrinterState.OFFLINE
        self._message = ""
        self._job: str | None = None
        self._layer = 0
        self._layers = 0
        self._reachable = True
        self._running = asyncio.Event()  # cleared while paused
        self._task: asyncio.Task[None] | None = None
        self._outage: asyncio.Task[None] | None = None
        self._subscribers: list[asyncio.Queue[PrinterEvent | None]] = []
        self._closed = False

    # -- PrinterDriver --------------------------------------------------------------------------------

    async def connect(self) -> None:
        self._check_reachable()
        if self._state in (PrinterState.OFFLINE, PrinterState.ERROR):
            self._state, self._message = PrinterState.IDLE, ""
            self._emit("connected")

    async def close(self) -> None:
        self._closed = True
        for task in (self._task, self._outage):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for queue in self._subscribers:
            queue.put_nowait(None)
        self._subscribers.clear()
        if self._own_dir:
            shutil.rmtree(self._files_dir, ignore_errors=True)

    async def status(self) -> PrinterStatus:
        self._check_reachable()
        return self._status()

    async def build_volume(self) -> BuildVolume | None:
        self._check_reachable()
        return self.spec.build_volume

    async def upload(self, path: Path, remote_name: str) -> str:
        self._check_reachable()
        if "/" in remote_name or remote_name in ("", ".", ".."):
            raise PrinterRejected(f"invalid file name {remote_name!r}")
        target = self._files_dir / remote_name
        # a print file can be hundreds of megabytes: copy and index it off the event loop
        await asyncio.to_thread(shutil.copyfile, path, target)
        try:
            program = await asyncio.to_thread(load_program, target, self.spec.technology, self.spec.layer_mm)
        except PrinterRejected:
            target.unlink(missing_ok=True)
            raise
        self._programs[remote_name] = program
        return remote_name

    async def start(self, remote_name: str) -> None:
        self._check_reachable()
        if self._state is not PrinterState.IDLE:
            raise PrinterRejected(f"printer is {self._state.value}, not idle{self._because()}")
        program = self._programs.get(remote_name)
        if program is None:
            raise PrinterRejected(f"file {remote_name!r} not found on the printer")
        self._job, self._layer, self._layers = remote_name, 0, program.layers
        self._state, self._message = PrinterState.PRINTING, ""
        self._running.set()
        self._emit("started")
        self._task = asyncio.create_task(self._print(), name=f"sim-print-{self.spec.id}")

    async def pause(self) -> None:
        self._check_reachable()
        if self._state is not PrinterState.PRINTING:
            raise PrinterRejected(f"printer is {self._state.value}, not printing")
        self._running.clear()
        self._state = PrinterState.PAUSED
        self._emit("paused")

    async def resume(self) -> None:
        self._check_reachable()
        if self._state is not PrinterState.PAUSED:
            raise PrinterRejected(f"printer is {self._state.value}, not paused")
        self._state = PrinterState.PRINTING
        self._running.set()
        self._emit("resumed")

    async def cancel(self) -> None:
        self._check_reachable()
        if self._state not in (PrinterState.PRINTING, PrinterState.PAUSED):
            raise PrinterRejected(f"printer is {self._state.value}, nothing to cancel")
        self._stop_print()
        self._finish(PrinterState.IDLE, "cancelled", "cancelled by the operator")

    def events(self) -> AsyncIterator[PrinterEvent]:
        queue: asyncio.Queue[PrinterEvent | None] = asyncio.Queue()
        if not self._closed:
            self._subscribers.append(queue)
        else:
            queue.put_nowait(None)
        return _drain(queue)

    def camera_urls(self) -> list[str]:
        return []

    # -- simulation controls --------------------------------------------------------------------------

    def snapshot_png(self) -> bytes:
        """The synthetic camera: the plate from above, the current (or last printed) layer on it."""
        program = self._programs.get(self._job) if self._job else None
        if program is None:
            return Program(Path(), "mesh", 0).render_png(0, self.spec.build_volume, self.settings.camera_px)
        return program.render_png(self._layer, self.spec.build_volume, self.settings.camera_px)

    def inject_error(self, message: str | None = None) -> None:
        """The printer errors now (aborting any print), as if its firmware had."""
        self._stop_print()
        self._finish(PrinterState.ERROR, "error", message or self._failure.error_message)

    def fail_at_layer(self, layer: int, message: str | None = None) -> None:
        self._failure = replace(self._failure, fail_at_layer=layer, fail_message=message or self._failure.fail_message)

    def go_unreachable(self, for_s: float | None = None) -> None:
        """The host stops answering for `for_s` simulated seconds (None: until `come_back()`)."""
        if not self._reachable:
            return
        self._emit("disconnected", reason="the host does not answer (simulated)")
        self._reachable = False
        if for_s is not None:
            self._outage = asyncio.create_task(self._back_after(for_s / self.settings.speed))

    def come_back(self) -> None:
        if not self._reachable:
            self._reachable = True
            self._emit("connected")

    # -- inside ---------------------------------------------------------------------------------------

    async def _print(self) -> None:
        while self._layer < self._layers:
            await self._running.wait()
            await asyncio.sleep(self.layer_s / self.settings.speed)
            await self._running.wait()  # a pause during a layer holds after it, like a real printer
            self._layer += 1
            failure = self._failure
            self._emit("progress")
            if failure.fail_at_layer == self._layer:
                self._finish(PrinterState.IDLE, "failed", failure.fail_message)
                return
            if failure.error_at_layer == self._layer:
                self._finish(PrinterState.ERROR, "error", failure.error_message)
                return
            if failure.unreachable_at_layer == self._layer:
                self.go_unreachable(failure.unreachable_for_s)
        self._finish(PrinterState.IDLE, "done", "")

    async def _back_after(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        self.come_back()

    def _stop_print(self) -> None:
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None

    def _finish(self, state: PrinterState, kind: str, message: str) -> None:
        self._state, self._message = state, message
        if message:
            self._emit(kind, message=message)
        else:
            self._emit(kind)
        if self._task is asyncio.current_task():
            self._task = None

    def _status(self) -> PrinterStatus:
        printing = self._state in (PrinterState.PRINTING, PrinterState.PAUSED)
        return PrinterStatus(
            state=self._state,
            job_file=self._job,
            progress=(self._layer / self._layers) if self._layers else None,
            layer=self._layer if self._job else None,
            layers=self._layers if self._job else None,
            eta_s=(self._layers - self._layer) * self.layer_s if printing else None,
            temperatures=self._temperatures(printing),
            message=self._message,
        )

    def _temperatures(self, printing: bool) -> tuple[Temperature, ...]:
        loaded = self.spec.loaded
        if self.spec.technology in (Technology.FDM, Technology.BIO) and loaded is not None:
            tool, bed = loaded.nozzle_c or ROOM_C, loaded.bed_c or ROOM_C
            return (
                Temperature("tool0", tool if printing else ROOM_C, tool if printing else None),
                Temperature("bed", bed if printing else ROOM_C, bed if printing else None),
            )
        chamber = {Technology.SLA: 31.0, Technology.METAL: 80.0, Technology.CERAMIC: 28.0}.get(self.spec.technology)
        if chamber is None:
            return ()
        return (Temperature("chamber", chamber if printing else ROOM_C, chamber if printing else None),)

    def _because(self) -> str:
        return f": {self._message}" if self._message else ""

    def _check_reachable(self) -> None:
        if not self._reachable:
            raise PrinterUnreachable(f"simulated printer {self.spec.id} does not answer")

    def _emit(self, kind: str, **detail: object) -> None:
        if not self._reachable:
            return  # the host is not answering: nobody hears it
        event = PrinterEvent(kind, self._status(), dict(detail))
        for queue in self._subscribers:
            queue.put_nowait(event)


async def _drain(queue: asyncio.Queue[PrinterEvent | None]) -> AsyncIterator[PrinterEvent]:
    while (event := await queue.get()) is not None:
        yield event
