"""What a printer host's events mean for the printer and its job (server/printing/tracking.py), and how
printer connections keep their secrets (server/printing/connections.py). Pure: no server, no host."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.core.errors import Invalid
from server.printing.connections import (
    SecretPolicy,
    SecretUnavailable,
    check_connection,
    public_connection,
    resolve_secret,
)
from server.printing.drivers.base import PrinterEvent, PrinterState, PrinterStatus
from server.printing.tracking import JobFacts, PrinterFacts, effective_state, follow

PRINTING = PrinterStatus(PrinterState.PRINTING, job_file="job.gcode", progress=0.4, layer=4, layers=10, eta_s=60.0)
IDLE = PrinterStatus(PrinterState.IDLE, message="Operational")
BUSY = PrinterFacts(PrinterState.PRINTING, current_job_id="j1")
ON_IT = JobFacts("j1", "printing", "job.gcode")


def test_a_done_print_ends_the_job_and_leaves_the_bed_to_be_cleared() -> None:
    outcome = follow(BUSY, ON_IT, PrinterEvent("done", IDLE), now_ms=5)
    assert outcome.job == {"state": "done", "reason": "", "finished_at_ms": 5, "command": None, "progress": 1.0}
    assert outcome.printer == {"bed_clear": False, "state_message": "", "current_job_id": None}
    assert effective_state(PrinterState.IDLE, maintenance=False, bed_clear=False) is PrinterState.BED_NOT_CLEARED
    assert effective_state(PrinterState.IDLE, maintenance=False, bed_clear=True) is PrinterState.IDLE


def test_progress_updates_the_job_without_a_history_line() -> None:
    outcome = follow(BUSY, ON_IT, PrinterEvent("progress", PRINTING), now_ms=5)
    assert outcome.job == {"progress": 0.4, "layer": 4, "layers": 10}
    assert outcome.job_event == "progress" and not outcome.changes_state


def test_a_printer_error_fails_the_job_and_pauses_the_printers_queue() -> None:
    error = PrinterEvent("error", PrinterStatus(PrinterState.ERROR), {"error": "MAXTEMP triggered!"})
    outcome = follow(BUSY, ON_IT, error, now_ms=5)
    assert outcome.job["state"] == "failed" and outcome.reason == "printer error: MAXTEMP triggered!"
    assert outcome.printer["queue_paused"] is True and outcome.printer["bed_clear"] is False


def test_only_the_host_going_away_interrupts_a_job() -> None:
    host = PrinterEvent("disconnected", PRINTING, {"source": "host", "reason": "push channel lost"})
    outcome = follow(BUSY, ON_IT, host, now_ms=5)
    assert outcome.job == {"state": "interrupted", "reason": "printer host unreachable: push channel lost"}
    assert "current_job_id" not in outcome.printer  # kept: the host may come back still printing it

    serial = PrinterEvent("disconnected", IDLE, {"source": "printer"})
    assert follow(BUSY, ON_IT, serial, now_ms=5).job["state"] == "failed"


def test_monitoring_resumes_when_the_host_is_back() -> None:
    interrupted = JobFacts("j1", "interrupted", "job.gcode")
    back = follow(BUSY, interrupted, PrinterEvent("connected", PRINTING, {"source": "host"}), now_ms=5)
    assert back.job["state"] == "printing" and back.job_event == "monitoring_resumed"

    lost = follow(BUSY, interrupted, PrinterEvent("connected", IDLE, {"source": "host"}), now_ms=5)
    assert lost.job == {} and lost.job_event == "monitoring_resumed"
    assert lost.printer["current_job_id"] is None and lost.printer["bed_clear"] is False


def test_events_about_another_file_do_not_touch_the_job() -> None:
    other = PrinterStatus(PrinterState.IDLE, job_file="someone-else.gcode")
    outcome = follow(BUSY, ON_IT, PrinterEvent("done", other), now_ms=5)
    assert outcome.job == {} and outcome.printer == {"bed_clear": False, "state_message": ""}


def test_maintenance_shows_once_nothing_prints() -> None:
    assert effective_state(PrinterState.PRINTING, maintenance=True, bed_clear=True) is PrinterState.PRINTING
    assert effective_state(PrinterState.IDLE, maintenance=True, bed_clear=False) is PrinterState.MAINTENANCE


def test_connections_hold_references_confined_to_the_allowed_places(tmp_path: Path) -> None:
    policy = SecretPolicy(env_prefix="TRINITY_PRINTER_", secrets_dir=tmp_path)
    good = {"base_url": "http://octopi.lan", "api_key_ref": "env:TRINITY_PRINTER_A"}
    assert check_connection("octoprint", good, policy) == good
    assert public_connection("octoprint", good) == {"base_url": "http://octopi.lan", "has_api_key": True}
    for bad in (
        {"base_url": "http://octopi.lan", "api_key": "literal"},
        {"base_url": "http://octopi.lan", "api_key_ref": "env:TRINITY_SECRET_KEY"},
        {"base_url": "http://octopi.lan", "api_key_ref": "file:/etc/shadow"},
        {"base_url": "http://octopi.lan", "api_key_ref": f"file:{tmp_path}/../outside"},
        {"base_url": "ftp://octopi.lan", "api_key_ref": "env:TRINITY_PRINTER_A"},
        {"base_url": "http://octopi.lan"},
    ):
        with pytest.raises(Invalid):
            check_connection("octoprint", bad, policy)
    with pytest.raises(Invalid):
        check_connection("simulator", {"speed": -1}, policy)

    (tmp_path / "key").write_text("s3cret\n")
    assert resolve_secret(f"file:{tmp_path}/key", policy) == "s3cret"
    with pytest.raises(SecretUnavailable):
        resolve_secret("env:TRINITY_PRINTER_NOT_SET_ANYWHERE", policy)


def test_a_print_that_ended_while_nobody_listened_is_settled_on_reconnect() -> None:
    finished = PrinterStatus(PrinterState.IDLE, job_file="job.gcode", progress=1.0, layer=10, layers=10)
    outcome = follow(BUSY, ON_IT, PrinterEvent("connected", finished, {"source": "host"}), now_ms=5)
    assert outcome.job["state"] == "done" and outcome.printer["bed_clear"] is False

    stopped = PrinterStatus(PrinterState.IDLE, job_file="job.gcode", progress=0.3, message="Operational")
    outcome = follow(BUSY, ON_IT, PrinterEvent("connected", stopped, {"source": "host"}), now_ms=5)
    assert outcome.job["state"] == "interrupted" and "no longer printing" in outcome.reason
