"""Klipper's words (through Moonraker) → Trinity's: printer objects (`print_stats`, `virtual_sdcard`,
`extruder`, `heater_bed`) and Klippy's connection state become PrinterStatus and PrinterEvents.
Pure: the driver feeds it what the host sent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from server.printing.drivers.base import PrinterEvent, PrinterState, PrinterStatus, Temperature

# What the driver subscribes to, and the fields it reads (None: the whole object).
SUBSCRIBED_OBJECTS: dict[str, list[str] | None] = {
    "print_stats": None,
    "virtual_sdcard": ["progress", "file_position", "is_active"],
    "extruder": ["temperature", "target"],
    "heater_bed": ["temperature", "target"],
}

KLIPPY_NOT_CONNECTED = "Klippy Host not connected"  # Moonraker's own words for it

_PRINT_STATES = {
    "standby": PrinterState.IDLE,
    "complete": PrinterState.IDLE,
    "cancelled": PrinterState.IDLE,
    "printing": PrinterState.PRINTING,
    "paused": PrinterState.PAUSED,
    "error": PrinterState.ERROR,
}


def build_status(objects: Mapping[str, Mapping[str, Any]], klippy_state: str, klippy_message: str) -> PrinterStatus:
    """`klippy_state` is Moonraker's: ready, startup, shutdown, error or disconnected."""
    if klippy_state != "ready":
        state = PrinterState.ERROR if klippy_state in ("shutdown", "error") else PrinterState.OFFLINE
        return PrinterStatus(state, message=klippy_message or f"Klippy {klippy_state}")
    stats = objects.get("print_stats") or {}
    sdcard = objects.get("virtual_sdcard") or {}
    info = stats.get("info") or {}
    print_state = str(stats.get("state") or "standby")
    progress = sdcard.get("progress")
    duration = stats.get("print_duration")
    eta_s = None
    if progress and duration and print_state in ("printing", "paused"):
        eta_s = max(0.0, float(duration) / float(progress) - float(duration))
    temps = []
    for name in ("extruder", "heater_bed"):
        heater = objects.get(name) or {}
        if heater.get("temperature") is not None:
            target = heater.get("target")
            temps.append(Temperature(name, float(heater["temperature"]), None if target is None else float(target)))
    return PrinterStatus(
        state=_PRINT_STATES.get(print_state, PrinterState.IDLE),
        job_file=stats.get("filename") or None,
        progress=None if progress is None else float(progress),
        layer=info.get("current_layer"),
        layers=info.get("total_layer"),
        eta_s=eta_s,
        temperatures=tuple(temps),
        message=str(stats.get("message") or print_state),
    )


def _lifecycle(before: str | None, after: str) -> str | None:
    """The event a change of print_stats.state means, if any."""
    if before == after or before is None:
        return None
    if after == "printing":
        return "resumed" if before == "paused" else "started"
    return {"paused": "paused", "complete": "done", "cancelled": "cancelled", "error": "failed"}.get(after)


def _merge(objects: dict[str, dict[str, Any]], delta: Mapping[str, Any]) -> None:
    for name, fields in delta.items():
        if isinstance(fields, Mapping):
            objects.setdefault(name, {}).update(fields)


class MoonrakerMonitor:
    """Folds Moonraker's notifications into the latest status and the events to tell."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.klippy_state = "disconnected"
        self.klippy_message = KLIPPY_NOT_CONNECTED
        self.status = build_status({}, self.klippy_state, self.klippy_message)
        self._told: PrinterStatus | None = None

    def _print_state(self) -> str | None:
        state = (self.objects.get("print_stats") or {}).get("state")
        return None if state is None else str(state)

    def _refresh(self, events: list[PrinterEvent]) -> list[PrinterEvent]:
        self.status = build_status(self.objects, self.klippy_state, self.klippy_message)
        if self.status != self._told:
            self._told = self.status
            events.append(PrinterEvent("progress", self.status))
        return events

    def klippy(self, state: str, message: str = "") -> list[PrinterEvent]:
        """Klippy's connection changed (server info, notify_klippy_ready/shutdown/disconnected)."""
        before = self.klippy_state
        self.klippy_state, self.klippy_message = state, message
        if state != "ready":
            self.objects.clear()  # stale the moment Klippy goes: a new subscription refills them
        self.status = self._told = build_status(self.objects, state, message)
        if before == state:
            return []
        if state == "ready":
            return [PrinterEvent("connected", self.status, {"source": "klippy"})]
        if state in ("shutdown", "error"):
            return [PrinterEvent("error", self.status, {"source": "klippy", "error": message})]
        if state == "disconnected":
            return [PrinterEvent("disconnected", self.status, {"source": "klippy", "reason": message})]
        return []

    def subscribed(self, snapshot: Mapping[str, Any]) -> list[PrinterEvent]:
        """The full object state a `printer.objects.subscribe` answered with: no lifecycle event from it."""
        self.objects.clear()
        _merge(self.objects, snapshot)
        return self._refresh([])

    def update(self, delta: Mapping[str, Any]) -> list[PrinterEvent]:
        """A `notify_status_update`: only the fields that changed."""
        before = self._print_state()
        _merge(self.objects, delta)
        after = self._print_state()
        events: list[PrinterEvent] = []
        kind = _lifecycle(before, after) if after is not None else None
        if kind is not None:
            self.status = self._told = build_status(self.objects, self.klippy_state, self.klippy_message)
            stats = self.objects.get("print_stats") or {}
            detail = {"filename": stats.get("filename") or "", "message": stats.get("message") or ""}
            events.append(PrinterEvent(kind, self.status, detail))
        return self._refresh(events)

    def host_down(self, reason: str) -> PrinterEvent:
        self.status = replace(self.status, state=PrinterState.OFFLINE, message=f"Moonraker unreachable: {reason}")
        self._told = self.status
        return PrinterEvent("disconnected", self.status, {"source": "host", "reason": reason})

    def host_up(self, status: PrinterStatus) -> PrinterEvent:
        self.status = self._told = status
        return PrinterEvent("connected", status, {"source": "host"})
