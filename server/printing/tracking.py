"""What a printer host's event means for the printer and for the print job on it. Pure: the supervisor
feeds it the facts it holds and the driver's event, and writes and publishes what comes back.

    outcome = follow(PrinterFacts(...), JobFacts(...) or None, event)
    outcome.printer     # printer columns to change (bed_clear, queue_paused, current_job_id, state_message)
    outcome.job         # print job columns to change (state, reason, progress, layer, layers, timings)
    outcome.job_event   # what happened to the job, for its history and the room (None: nothing new)

Rules (docs/architecture.md, "Printing"):
- done, failed, cancelled: the job ends; the printer keeps BED_NOT_CLEARED until an operator confirms
  the plate is empty (a failed or cancelled print leaves material on it too);
- error (the printer itself, e.g. OctoPrint's "Offline after error"): the job fails with the printer's
  words and the printer's queue is paused until an operator resumes it;
- the host unreachable (`disconnected` with source "host"): the printer is offline and an active job is
  "interrupted" with the reason; when the host answers again and is still printing that job's file,
  the job is followed again, otherwise it stays interrupted and the plate must be checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from server.printing.drivers.base import PrinterEvent, PrinterState, PrinterStatus

ON_PRINTER = frozenset({"starting", "printing", "paused"})  # a job the host has (or is about to have)
ENDED = frozenset({"done", "failed", "cancelled", "refused"})


def effective_state(driver_state: PrinterState, *, maintenance: bool, bed_clear: bool) -> PrinterState:
    """What everyone sees: maintenance wins once nothing is printing; a finished print nobody cleared
    keeps an idle printer BED_NOT_CLEARED."""
    if maintenance and driver_state not in (PrinterState.PRINTING, PrinterState.PAUSED):
        return PrinterState.MAINTENANCE
    if driver_state is PrinterState.IDLE and not bed_clear:
        return PrinterState.BED_NOT_CLEARED
    return driver_state


@dataclass(frozen=True)
class PrinterFacts:
    driver_state: PrinterState
    bed_clear: bool = True
    queue_paused: bool = False
    current_job_id: str | None = None


@dataclass(frozen=True)
class JobFacts:
    id: str
    state: str
    remote_file: str | None = None


@dataclass(frozen=True)
class Outcome:
    status: PrinterStatus | None
    printer: dict[str, Any] = field(default_factory=dict)
    job: dict[str, Any] = field(default_factory=dict)
    job_event: str | None = None
    reason: str = ""

    @property
    def changes_state(self) -> bool:
        """Anything beyond a progress tick: worth a database write and a history line now."""
        return bool(self.printer) or "state" in self.job


def host_down(event: PrinterEvent) -> bool:
    return event.kind == "disconnected" and event.detail.get("source") == "host"


def words(event: PrinterEvent) -> str:
    """The host's own words for what happened (simulator `message`, OctoPrint `error`, else its state)."""
    for key in ("message", "error", "reason"):
        value = event.detail.get(key)
        if isinstance(value, str) and value:
            return value
    return event.status.message if event.status is not None else ""


def follow(printer: PrinterFacts, job: JobFacts | None, event: PrinterEvent, *, now_ms: int) -> Outcome:
    status = event.status
    on_printer = job is not None and job.state in ON_PRINTER
    ours = job is not None and (job.remote_file is None or status is None or status.job_file in (None, job.remote_file))
    kind = event.kind

    if host_down(event):
        reason = f"printer host unreachable: {event.detail.get('reason') or words(event)}"
        printer_changes: dict[str, Any] = {"state_message": reason[:500]}
        if job is not None and on_printer:
            return Outcome(status, printer_changes, {"state": "interrupted", "reason": reason}, "interrupted", reason)
        return Outcome(status, printer_changes)

    if kind == "connected" and job is not None and job.state == "interrupted":
        if status is not None and status.state in (PrinterState.PRINTING, PrinterState.PAUSED) and ours:
            state = "printing" if status.state is PrinterState.PRINTING else "paused"
            reason = "the host answers again and is still printing this job"
            return Outcome(status, {"state_message": ""}, {"state": state, "reason": ""}, "monitoring_resumed", reason)
        reason = "the host answers again but is no longer printing this job: check the plate"
        printer_changes = {"current_job_id": None, "bed_clear": False, "state_message": reason}
        return Outcome(status, printer_changes, {}, "monitoring_resumed", reason)

    if kind == "connected" and job is not None and job.state in ("printing", "paused") and _stopped(status):
        # (Re)connected to a host we thought was printing (this instance just took over, or the push channel
        # came back) and it has stopped meanwhile: the end was missed; say what the host shows.
        assert status is not None
        printer_changes = {"current_job_id": None, "bed_clear": False}
        if ours and status.job_file is not None and (status.progress or 0.0) >= 0.999:
            return Outcome(status, printer_changes, _ended("done", "", now_ms) | {"progress": 1.0}, "done")
        reason = f"the host is no longer printing this job ({status.message or status.state.value})"
        return Outcome(status, printer_changes, {"state": "interrupted", "reason": reason}, "interrupted", reason)

    if kind == "error":
        reason = f"printer error: {words(event)}"
        printer_changes = {"queue_paused": True, "state_message": reason[:500]}
        if job is not None and on_printer:
            printer_changes |= {"current_job_id": None, "bed_clear": False}
            return Outcome(status, printer_changes, _ended("failed", reason, now_ms), "failed", reason)
        return Outcome(status, printer_changes)

    if kind in ("done", "failed", "cancelled"):
        printer_changes = {"bed_clear": False, "state_message": ""}
        if job is None or not on_printer or not ours:
            return Outcome(status, printer_changes)  # a print started at the host itself still used the plate
        printer_changes["current_job_id"] = None
        reason = "" if kind == "done" else words(event)
        changes = _ended(kind, reason, now_ms)
        if kind == "done":
            changes |= {"progress": 1.0} | ({"layer": status.layers} if status and status.layers else {})
        return Outcome(status, printer_changes, changes, kind, reason)

    if kind == "disconnected" and job is not None and on_printer and job.state != "starting":
        reason = f"the printer's link to its host closed: {words(event)}"
        printer_changes = {"current_job_id": None, "bed_clear": False, "state_message": reason[:500]}
        return Outcome(status, printer_changes, _ended("failed", reason, now_ms), "failed", reason)

    if job is None or not on_printer or not ours:
        return Outcome(status)
    # A host's status at "started" may still carry the previous print's progress: this one starts at 0.
    changes = {"progress": 0.0, "layer": None} if kind == "started" else _progress(status)
    new_state = _job_state(kind, status, job.state)
    if new_state is not None and new_state != job.state:
        changes["state"] = new_state
        if new_state == "printing" and job.state == "starting":
            changes["started_at_ms"] = now_ms
            return Outcome(status, {}, changes, "started")
        return Outcome(status, {}, changes, "paused" if new_state == "paused" else "resumed")
    return Outcome(status, {}, changes, "progress" if changes else None)


def _stopped(status: PrinterStatus | None) -> bool:
    return status is not None and status.state not in (PrinterState.PRINTING, PrinterState.PAUSED)


def _job_state(kind: str, status: PrinterStatus | None, current: str) -> str | None:
    if kind in ("started", "resumed"):
        return "printing"
    if kind == "paused":
        return "paused"
    if status is None:
        return None
    if status.state is PrinterState.PRINTING and current in ("starting", "paused"):
        return "printing"
    if status.state is PrinterState.PAUSED and current in ("starting", "printing"):
        return "paused"
    return None


def _progress(status: PrinterStatus | None) -> dict[str, Any]:
    if status is None or status.state not in (PrinterState.PRINTING, PrinterState.PAUSED):
        return {}
    changes: dict[str, Any] = {}
    if status.progress is not None:
        changes["progress"] = round(status.progress, 4)
    if status.layer is not None:
        changes["layer"] = status.layer
    if status.layers is not None:
        changes["layers"] = status.layers
    return changes


def _ended(state: str, reason: str, now_ms: int) -> dict[str, Any]:
    return {"state": state, "reason": reason[:2000], "finished_at_ms": now_ms, "command": None}
