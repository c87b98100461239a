"""The ephemeral frames the supervisor publishes into maker rooms (docs/protocol.md, "Maker room"):

    {"type": "printer", "id", "name", "technology", "state", "job", "progress", "layer", "layers",
     "eta_s", "temperatures": [{"name", "actual_c", "target_c"}], "message"}
    {"type": "print_job", "id", "state", "printer_id", "progress", "reason", "event", "layer", "layers", "name",
     "purpose"}

Built from plain values (the rows' fields and the host's last status), so they are the same whichever
instance supervises. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from server.printing.drivers.base import PrinterStatus, Temperature


def temperatures_json(temperatures: Sequence[Temperature]) -> list[dict[str, Any]]:
    return [{"name": t.name, "actual_c": round(t.actual_c, 1), "target_c": t.target_c} for t in temperatures]


def status_json(status: PrinterStatus) -> dict[str, Any]:
    """A host status as stored on the printer row (`status` column)."""
    return {
        "driver_state": status.state.value,
        "job_file": status.job_file,
        "progress": None if status.progress is None else round(status.progress, 4),
        "layer": status.layer,
        "layers": status.layers,
        "eta_s": None if status.eta_s is None else round(status.eta_s, 1),
        "temperatures": temperatures_json(status.temperatures),
        "message": status.message,
    }


def printer_frame(
    *,
    printer_id: str,
    name: str,
    technology: str,
    state: str,
    job_id: str | None,
    status: Mapping[str, Any],
    message: str,
) -> dict[str, Any]:
    active = job_id is not None
    return {
        "type": "printer",
        "id": printer_id,
        "name": name,
        "technology": technology,
        "state": state,
        "job": job_id,
        "progress": status.get("progress") if active else None,
        "layer": status.get("layer") if active else None,
        "layers": status.get("layers") if active else None,
        "eta_s": status.get("eta_s") if active else None,
        "temperatures": list(status.get("temperatures") or []),
        "message": message or str(status.get("message") or ""),
    }


def print_job_frame(
    *,
    job_id: str,
    name: str,
    state: str,
    printer_id: str | None,
    progress: float,
    layer: int | None,
    layers: int | None,
    reason: str,
    event: str,
    purpose: str = "clinical",
) -> dict[str, Any]:
    return {
        "type": "print_job",
        "id": job_id,
        "name": name,
        "state": state,
        "printer_id": printer_id,
        "progress": round(progress, 4),
        "layer": layer,
        "layers": layers,
        "reason": reason,
        "event": event,
        "purpose": purpose,
    }
