"""Retiring a printer through the real app (SQLite and PostgreSQL): refused while it prints or a job is
assigned to it, otherwise it leaves the fleet, its monitoring stops, the maker room hears it last as
`retired`, and the history of the jobs it printed still names it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from server.rooms.client import RoomClient
from tests.support.printing import (
    Frames,
    PrintingServer,
    add_printer,
    maker_room,
    new_case,
    small_bone,
    upload_part,
    wait_job,
)
from tests.support.world import World

SLA = {"build_volume_mm": [145, 145, 185], "material": "resin_biocompatible", "nozzle_mm": None}


@pytest.fixture
async def live(world: World) -> AsyncIterator[PrintingServer]:
    async with PrintingServer(world.settings) as server:
        yield server


async def test_a_printer_is_retired_only_with_no_job_on_it_and_its_history_stays(
    live: PrintingServer, world: World
) -> None:
    async with (
        live.http(world["technician"]) as tech,
        live.http(world["engineer"]) as engineer,
        RoomClient(live.base_url, maker_room(world), world["engineer"].token) as room,
    ):
        frames = Frames(room)
        await add_printer(tech, "fdm-a", connection={"layer_s": 1.0, "speed": 2.0})  # half a second a layer
        await add_printer(tech, "fdm-b")
        await frames.printer("fdm-b", "idle")
        case_id = await new_case(engineer)
        artifact_id = await upload_part(engineer, case_id, small_bone())
        body = {"artifact_id": artifact_id, "part_class": "anatomical_model"}

        printing = (await tech.post("/api/print-jobs", json=body)).json()["id"]
        await frames.job(printing, "printing", event="started")  # on fdm-a, the first of two equal printers
        busy = await tech.delete("/api/printers/fdm-a")
        assert busy.status_code == 409, busy.text
        error = busy.json()["error"]
        assert error["code"] == "printer_in_use"
        assert error["details"]["reasons"] == ["it is printing", f"job {printing} is on it (printing)"]

        waiting = (await engineer.post("/api/print-jobs", json=body)).json()["id"]  # waits for a technician
        assigned = await tech.post(f"/api/print-jobs/{waiting}/assign", json={"printer_id": "fdm-b"})
        assert assigned.status_code == 200, assigned.text
        await wait_job(engineer, waiting, "ready")
        refused = await tech.delete("/api/printers/fdm-b")
        assert refused.status_code == 409
        assert refused.json()["error"]["details"]["reasons"] == [f"job {waiting} is assigned to it (ready)"]
        assert (await engineer.delete("/api/printers/fdm-b")).status_code == 403
        assert (await tech.post(f"/api/print-jobs/{waiting}/assign", json={"printer_id": None})).status_code == 200

        retired = await tech.delete("/api/printers/fdm-b")
        assert retired.status_code == 200, retired.text
        assert retired.json()["state"] == "retired" and retired.json()["retired_at_ms"] is not None
        told = await frames.printer("fdm-b", "retired")
        assert told["job"] is None and "left the fleet" in told["message"]
        assert [p["id"] for p in (await engineer.get("/api/printers")).json()] == ["fdm-a"]
        assert [p["id"] for p in (await engineer.get("/api/sites/site-a/fleet")).json()["printers"]] == ["fdm-a"]
        everyone = (await engineer.get("/api/printers", params={"include_retired": "true"})).json()
        assert [(p["id"], p["state"]) for p in everyone][1] == ("fdm-b", "retired")
        assert (await engineer.get("/api/printers/fdm-b")).json()["state"] == "retired"
        assert "fdm-b" not in live.app.state.printing.monitors  # no longer monitored
        assert (await tech.patch("/api/printers/fdm-b", json={"location": "basement"})).status_code == 404
        again = await tech.post("/api/printers", json={"id": "fdm-b", "name": "B", "technology": "sla"} | SLA)
        assert again.status_code == 409 and "retired" in again.json()["error"]["message"]

        # Once its print is over, fdm-a may go too (the part on its bed is the operators' to take off).
        assert (await tech.post(f"/api/print-jobs/{printing}/cancel")).status_code == 200
        await frames.job(printing, "cancelled")
        await frames.printer("fdm-a", "bed-not-cleared")
        assert (await tech.delete("/api/printers/fdm-a")).status_code == 200
        await frames.printer("fdm-a", "retired")
        assert (await engineer.get("/api/printers")).json() == []

        record = (await engineer.get(f"/api/print-jobs/{printing}")).json()
        assert record["printer_id"] == "fdm-a"
        assert {h["printer_id"] for h in record["history"] if h["what"] in ("started", "cancelled")} == {"fdm-a"}
        assert (await engineer.get("/api/printers/fdm-a")).json()["name"] == "FDM-A"
        # With no printer left, the waiting job is refused, and nothing more is said of the retired printers.
        assert (await tech.post(f"/api/print-jobs/{waiting}/start", json={})).status_code == 200
        refusal = await frames.job(waiting, "refused")
        assert "the fleet has no printers" in refusal["reason"]
        assert frames.of("printer", "fdm-a")[-1]["state"] == frames.of("printer", "fdm-b")[-1]["state"] == "retired"
