"""The one interface every printer driver implements, and what drivers report.

A driver talks to one printer host (OctoPrint, Moonraker) or simulates a printer. It is an edge: it
does network I/O, but it imports no FastAPI, SQL or Redis; the printing supervisor owns the drivers,
persists what they report and publishes it into the maker room. Every method may raise
`PrinterUnreachable` (the host does not answer: the supervisor marks the printer offline and the job
interrupted) or `PrinterRejected` (the host answered no, with its reason).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol


class PrinterState(StrEnum):
    OFFLINE = "offline"
    IDLE = "idle"
    PRINTING = "printing"
    PAUSED = "paused"
    ERROR = "error"
    MAINTENANCE = "maintenance"
    BED_NOT_CLEARED = "bed-not-cleared"


class PrinterUnreachable(Exception):
    """The printer host does not answer (connection refused, timeout, closed push channel)."""


class PrinterRejected(Exception):
    """The printer host answered, and refused (busy, file not found, printer not operational, ...)."""


@dataclass(frozen=True)
class Temperature:
    name: str  # "tool0", "bed", "chamber", "extruder", "heater_bed"
    actual_c: float
    target_c: float | None = None


@dataclass(frozen=True)
class PrinterStatus:
    state: PrinterState
    job_file: str | None = None  # the file being printed, as named on the host
    progress: float | None = None  # 0..1
    layer: int | None = None
    layers: int | None = None
    eta_s: float | None = None
    temperatures: tuple[Temperature, ...] = ()
    message: str = ""  # the host's own words for an error or state ("Offline after error", ...)


@dataclass(frozen=True)
class PrinterEvent:
    """Something happened on the host: started, paused, resumed, done, failed, cancelled, error,
    disconnected, connected, progress (with the status)."""

    kind: str
    status: PrinterStatus | None = None
    detail: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildVolume:
    x_mm: float
    y_mm: float
    z_mm: float


class PrinterDriver(Protocol):
    async def connect(self) -> None:
        """Open the session (and the push channel where the host has one). Idempotent."""

    async def close(self) -> None: ...

    async def status(self) -> PrinterStatus: ...

    async def build_volume(self) -> BuildVolume | None:
        """What the host reports (OctoPrint's printer profile), or None when it does not know."""

    async def upload(self, path: Path, remote_name: str) -> str:
        """Store a print file (G-code, SLA archive) on the host; returns its name there."""

    async def start(self, remote_name: str) -> None: ...

    async def pause(self) -> None: ...

    async def resume(self) -> None: ...

    async def cancel(self) -> None: ...

    def events(self) -> AsyncIterator[PrinterEvent]:
        """Live events from the host's push channel (or from polling where it has none), until close()."""

    def camera_urls(self) -> list[str]:
        """Snapshot or stream URLs (MJPEG, RTSP) of the printer's cameras, if any."""
