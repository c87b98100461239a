"""OctoPrint's words → Trinity's: printer state texts, job progress and push-channel messages become
PrinterStatus and PrinterEvents. Pure: the driver feeds it what the host sent."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from server.printing.drivers.base import PrinterEvent, PrinterState, PrinterStatus, Temperature
from server.printing.drivers.gcode_layers import LayerIndex

LayerLookup = Callable[[str], LayerIndex | None]

# OctoPrint's event types that the rest of Trinity acts on, and what we call them.
EVENT_KINDS = {
    "PrintStarted": "started",
    "PrintPaused": "paused",
    "PrintResumed": "resumed",
    "PrintDone": "done",
    "PrintFailed": "failed",
    "PrintCancelled": "cancelled",
    "Error": "error",
    "Connected": "connected",
    "Disconnected": "disconnected",
}

# State texts of OctoPrint 1.11 (octoprint.util.comm.MachineCom.getStateString) while a job is active.
_ACTIVE_TEXTS = ("printing", "starting", "finishing", "cancelling", "resuming", "sending file to sd", "transferring")


def printer_state(text: str, flags: Mapping[str, Any] | None = None) -> PrinterState:
    """Map OctoPrint's state text (and its flags where we have them) onto PrinterState."""
    lowered = text.strip().lower()
    flags = flags or {}
    # "Offline after error" carries closedOrError but not the error flag, so the text decides first.
    if lowered.startswith("error") or lowered == "offline after error" or flags.get("error"):
        return PrinterState.ERROR
    if flags.get("paused") or flags.get("pausing") or lowered in ("paused", "pausing"):
        return PrinterState.PAUSED
    if any(flags.get(f) for f in ("printing", "cancelling", "finishing", "resuming")):
        return PrinterState.PRINTING
    if lowered.startswith(_ACTIVE_TEXTS):
        return PrinterState.PRINTING
    if flags.get("operational") or lowered == "operational":
        return PrinterState.IDLE
    return PrinterState.OFFLINE


def temperatures(sample: Mapping[str, Any]) -> tuple[Temperature, ...]:
    """{"tool0": {"actual": 21.3, "target": 0.0}, "bed": {...}} → Temperatures (readings without a value dropped)."""
    found = []
    for name, reading in sorted(sample.items()):
        if not isinstance(reading, Mapping) or reading.get("actual") is None:
            continue
        target = reading.get("target")
        found.append(Temperature(name, float(reading["actual"]), None if target is None else float(target)))
    return tuple(found)


def build_status(
    *,
    text: str,
    flags: Mapping[str, Any] | None,
    error: str | None,
    job_file: str | None,
    progress: Mapping[str, Any],
    temps: Mapping[str, Any],
    layer_index: LayerLookup,
) -> PrinterStatus:
    state = printer_state(text, flags)
    message = f"{text}: {error}" if error and error not in text else text
    completion = progress.get("completion")
    filepos = progress.get("filepos")
    time_left = progress.get("printTimeLeft")
    layer = layers = None
    index = layer_index(job_file) if job_file else None
    if index is not None and index.layers:
        layers = index.layers
        layer = index.layer_at(int(filepos)) if filepos is not None else None
    return PrinterStatus(
        state=state,
        job_file=job_file,
        progress=None if completion is None else min(1.0, max(0.0, float(completion) / 100)),
        layer=layer,
        layers=layers,
        eta_s=None if time_left is None else float(time_left),
        temperatures=temperatures(temps),
        message=message,
    )


def status_from_push(current: Mapping[str, Any], layer_index: LayerLookup, previous: PrinterStatus) -> PrinterStatus:
    """A `current` (or `history`) push message → PrinterStatus."""
    state = current.get("state") or {}
    job = current.get("job") or {}
    samples = current.get("temps") or []
    status = build_status(
        text=str(state.get("text") or "Offline"),
        flags=state.get("flags"),
        error=state.get("error") or None,
        job_file=(job.get("file") or {}).get("path"),
        progress=current.get("progress") or {},
        temps=samples[-1] if samples else {},
        layer_index=layer_index,
    )
    # `temps` holds only the samples since the last message, often none: the last reading still stands.
    return status if samples else replace(status, temperatures=previous.temperatures)


class OctoPrintMonitor:
    """Folds push-channel messages into the latest status and the events to tell."""

    def __init__(self, layer_index: LayerLookup) -> None:
        self._layer_index = layer_index
        self.status = PrinterStatus(PrinterState.OFFLINE, message="not connected")
        self._told: PrinterStatus | None = None

    def feed(self, message: Mapping[str, Any]) -> list[PrinterEvent]:
        events: list[PrinterEvent] = []
        for key in ("history", "current"):
            if isinstance(message.get(key), Mapping):
                self.status = status_from_push(message[key], self._layer_index, self.status)
                if self.status != self._told:  # OctoPrint repeats `current` twice a second even when idle
                    self._told = self.status
                    events.append(PrinterEvent("progress", self.status))
        event = message.get("event")
        if isinstance(event, Mapping):
            events.extend(self._on_event(str(event.get("type")), event.get("payload") or {}))
        return events

    def _on_event(self, kind_on_host: str, payload: Mapping[str, Any]) -> list[PrinterEvent]:
        kind = EVENT_KINDS.get(kind_on_host)
        if kind is None:
            return []
        if kind == "failed" and payload.get("reason") == "cancelled":
            return []  # OctoPrint follows PrintCancelled with PrintFailed(reason=cancelled): told once
        detail: dict[str, object] = {k: v for k, v in payload.items() if k != "logs"}
        status = self.status
        # The next `current` message confirms within half a second; until then say what the event implies.
        if kind in ("started", "resumed"):
            status = replace(status, state=PrinterState.PRINTING, job_file=payload.get("path") or status.job_file)
            status = replace(status, message="Printing")
        elif kind == "paused":
            status = replace(status, state=PrinterState.PAUSED, message="Paused")
        elif kind == "done":
            status = replace(status, state=PrinterState.IDLE, progress=1.0, layer=status.layers, eta_s=0.0)
            status = replace(status, message="Operational")
        elif kind == "cancelled":
            status = replace(status, state=PrinterState.IDLE, message="Operational")
        elif kind == "error":
            status = replace(status, state=PrinterState.ERROR, message=str(payload.get("error") or "Error"))
        elif kind == "disconnected" and status.state is not PrinterState.ERROR:
            status = replace(status, state=PrinterState.OFFLINE, message="Offline")
        if kind in ("connected", "disconnected"):
            detail["source"] = "printer"  # the serial link, not the host: see host_down()
        self.status = self._told = status
        return [PrinterEvent(kind, status, detail)]

    def host_down(self, reason: str) -> PrinterEvent:
        self.status = replace(self.status, state=PrinterState.OFFLINE, message=f"OctoPrint unreachable: {reason}")
        self._told = self.status
        return PrinterEvent("disconnected", self.status, {"source": "host", "reason": reason})

    def host_up(self, status: PrinterStatus) -> PrinterEvent:
        self.status = self._told = status
        return PrinterEvent("connected", status, {"source": "host"})
