"""The pure parts of the OctoPrint and Moonraker drivers: host words → PrinterStatus and PrinterEvents,
and layers from G-code byte positions. Microseconds, no host needed."""

from __future__ import annotations

import pytest

from server.printing.drivers.base import PrinterState
from server.printing.drivers.gcode_layers import LayerIndex
from server.printing.drivers.moonraker_events import KLIPPY_NOT_CONNECTED, MoonrakerMonitor
from server.printing.drivers.octoprint_events import OctoPrintMonitor, printer_state


@pytest.mark.parametrize(
    ("text", "flags", "state"),
    [
        ("Operational", {"operational": True, "ready": True}, PrinterState.IDLE),
        ("Printing", {"printing": True, "operational": True}, PrinterState.PRINTING),
        ("Finishing", {"finishing": True}, PrinterState.PRINTING),
        ("Cancelling", None, PrinterState.PRINTING),
        ("Pausing", {"pausing": True, "operational": True}, PrinterState.PAUSED),
        ("Paused", None, PrinterState.PAUSED),
        ("Offline after error", {"closedOrError": True, "error": False}, PrinterState.ERROR),
        ("Error: MAXTEMP triggered!", None, PrinterState.ERROR),
        ("Offline", {"closedOrError": True}, PrinterState.OFFLINE),
        ("Detecting serial connection", None, PrinterState.OFFLINE),
    ],
)
def test_octoprint_state_texts_map_onto_printer_states(
    text: str, flags: dict[str, bool] | None, state: PrinterState
) -> None:
    assert printer_state(text, flags) is state


def _current(text: str, completion: float | None, filepos: int | None, path: str = "part.gcode") -> dict[str, object]:
    return {
        "current": {
            "state": {"text": text, "flags": {}, "error": ""},
            "job": {"file": {"path": path}},
            "progress": {"completion": completion, "filepos": filepos, "printTimeLeft": 12},
            "temps": [{"time": 1, "tool0": {"actual": 200.1, "target": 200.0}, "bed": {"actual": 60, "target": 60}}],
        }
    }


def test_octoprint_progress_carries_layer_from_file_position_and_is_told_once_per_change() -> None:
    index = LayerIndex((10, 100, 200))
    monitor = OctoPrintMonitor({"part.gcode": index}.get)
    [event] = monitor.feed(_current("Printing", 50.0, 150))
    assert event.kind == "progress" and event.status is not None
    assert (event.status.progress, event.status.layer, event.status.layers, event.status.eta_s) == (0.5, 2, 3, 12.0)
    assert [t.name for t in event.status.temperatures] == ["bed", "tool0"]
    assert monitor.feed(_current("Printing", 50.0, 150)) == []  # OctoPrint repeats itself twice a second


def test_octoprint_cancel_is_told_once_not_also_as_a_failure() -> None:
    monitor = OctoPrintMonitor(lambda _: None)
    monitor.feed(_current("Printing", 20.0, 50))
    cancelled = monitor.feed({"event": {"type": "PrintCancelled", "payload": {"path": "part.gcode"}}})
    failed = monitor.feed({"event": {"type": "PrintFailed", "payload": {"path": "part.gcode", "reason": "cancelled"}}})
    assert [e.kind for e in cancelled] == ["cancelled"] and failed == []


def test_octoprint_error_then_disconnect_keeps_the_error_in_octoprint_words() -> None:
    monitor = OctoPrintMonitor(lambda _: None)
    error = {"error": "MAXTEMP triggered!", "reason": "firmware", "logs": ["Recv: ..."]}
    [told] = monitor.feed({"event": {"type": "Error", "payload": error}})
    assert told.kind == "error" and "logs" not in told.detail
    [gone] = monitor.feed({"event": {"type": "Disconnected", "payload": None}})
    assert gone.detail["source"] == "printer"
    assert gone.status is not None and gone.status.state is PrinterState.ERROR
    assert gone.status.message == "MAXTEMP triggered!"


def test_octoprint_host_down_and_up() -> None:
    monitor = OctoPrintMonitor(lambda _: None)
    down = monitor.host_down("push channel lost")
    assert down.kind == "disconnected" and down.detail == {"source": "host", "reason": "push channel lost"}
    assert down.status is not None and down.status.state is PrinterState.OFFLINE


def test_layer_index_reads_cura_and_prusaslicer_markers() -> None:
    lines = [b"G28\n", b";LAYER:0\n", b"G1 X1\n", b";LAYER_CHANGE\n", b";Z:0.4\n", b"G1 X2\n", b"; LAYER:2\n"]
    index = LayerIndex.from_lines(lines)
    assert index.starts == (4, 19, 46)
    assert [index.layer_at(p) for p in (0, 4, 18, 19, 60)] == [0, 1, 1, 2, 3]


def _stats(state: str, **extra: object) -> dict[str, object]:
    return {"print_stats": {"state": state, "filename": "part.gcode", **extra}}


def test_moonraker_print_state_changes_become_lifecycle_events() -> None:
    monitor = MoonrakerMonitor()
    [connected] = monitor.klippy("ready")
    assert connected.kind == "connected" and connected.detail["source"] == "klippy"
    monitor.subscribed({**_stats("standby"), "virtual_sdcard": {"progress": 0.0}})
    kinds = []
    info = {"current_layer": 3, "total_layer": 10}
    for delta in (
        {**_stats("printing", print_duration=30.0, info=info), "virtual_sdcard": {"progress": 0.25}},
        _stats("paused"),
        _stats("printing"),
        {**_stats("complete"), "virtual_sdcard": {"progress": 1.0}},
    ):
        kinds += [e.kind for e in monitor.update(delta) if e.kind != "progress"]
    assert kinds == ["started", "paused", "resumed", "done"]


def test_moonraker_status_while_printing() -> None:
    monitor = MoonrakerMonitor()
    monitor.klippy("ready")
    info = {"current_layer": 3, "total_layer": 10}
    monitor.subscribed(
        {
            **_stats("printing", print_duration=30.0, info=info),
            "virtual_sdcard": {"progress": 0.25},
            "extruder": {"temperature": 210.0, "target": 210.0},
            "heater_bed": {"temperature": 60.0, "target": 60.0},
        }
    )
    status = monitor.status
    assert status.state is PrinterState.PRINTING and status.job_file == "part.gcode"
    assert (status.progress, status.layer, status.layers, status.eta_s) == (0.25, 3, 10, 90.0)
    assert [t.name for t in status.temperatures] == ["extruder", "heater_bed"]


def test_moonraker_klippy_gone_is_offline_in_moonraker_words() -> None:
    monitor = MoonrakerMonitor()
    monitor.klippy("ready")
    [event] = monitor.klippy("disconnected", KLIPPY_NOT_CONNECTED)
    assert event.kind == "disconnected" and event.detail["source"] == "klippy"
    assert monitor.status.state is PrinterState.OFFLINE and monitor.status.message == KLIPPY_NOT_CONNECTED
    [shutdown] = monitor.klippy("shutdown", "MCU 'mcu' shutdown: Timer too close")
    assert shutdown.kind == "error" and monitor.status.state is PrinterState.ERROR
