"""Printing through the real app with simulated printers: queue → preflight → schedule → slice (PrusaSlicer)
→ upload → start → live frames in the maker room → done → bed cleared → next job.

The app as create_app builds it (printing installed by server/printing/wiring.py). No timed assertions:
every wait is a generous deadline.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pypdf
import pytest
import trimesh

from server.rooms.client import RoomClient
from tests.support.printing import (
    Frames,
    PrintingServer,
    add_device_artifact,
    add_printer,
    approve_plan,
    design_guide,
    maker_room,
    new_case,
    small_bone,
    upload_part,
    wait_job,
)
from tests.support.world import World


@pytest.fixture
async def live(world: World) -> AsyncIterator[PrintingServer]:
    async with PrintingServer(world.settings) as server:
        yield server


@pytest.fixture
async def live_sqlite(world_sqlite: World) -> AsyncIterator[PrintingServer]:
    async with PrintingServer(world_sqlite.settings) as server:
        yield server


async def test_maker_room_follows_a_print_until_done_and_the_bed_gates_the_next(
    live: PrintingServer, world: World
) -> None:
    room_id = maker_room(world)
    async with (
        live.http(world["technician"]) as tech,
        live.http(world["engineer"]) as engineer,
        RoomClient(live.base_url, room_id, world["engineer"].token) as room,
    ):
        frames = Frames(room)
        await add_printer(tech, "fdm-a")
        await frames.printer("fdm-a", "idle")
        case_id = await new_case(engineer)
        artifact_id = await upload_part(engineer, case_id, small_bone())

        # An engineer may queue; the job waits for a technician to start it.
        queued = await engineer.post(
            "/api/print-jobs", json={"artifact_id": artifact_id, "part_class": "anatomical_model"}
        )
        assert queued.status_code == 201, queued.text
        job_id = queued.json()["id"]
        assert (await engineer.post(f"/api/print-jobs/{job_id}/start", json={})).status_code == 403
        waiting = await wait_job(engineer, job_id, "ready")
        assert waiting["preflight"]["printable"] and "fdm-a" in waiting["preflight"]["printers"]
        assert (await tech.post(f"/api/print-jobs/{job_id}/start", json={})).status_code == 200
        # A technician's job is released at once; it prepares meanwhile and waits for the printer.
        second = await tech.post("/api/print-jobs", json={"artifact_id": artifact_id, "part_class": "anatomical_model"})
        second_id = second.json()["id"]

        done = await frames.job(job_id, "done")
        assert done["printer_id"] == "fdm-a" and done["progress"] == 1.0
        events = [f["event"] for f in frames.of("print_job", job_id)]
        assert events.index("assigned") < events.index("sliced") < events.index("started") < events.index("done")
        progress = [f for f in frames.of("printer", "fdm-a") if f["state"] == "printing" and f["layer"]]
        assert len(progress) >= 3, "too few progress frames"
        layers = [f["layer"] for f in progress]
        assert layers == sorted(layers) and len(set(layers)) >= 3
        assert [f["progress"] for f in progress] == sorted(f["progress"] for f in progress)
        total = progress[-1]["layers"]
        assert total and all(f["layers"] == total for f in progress) and layers[-1] <= total
        assert all(f["job"] == job_id and f["eta_s"] is not None for f in progress)
        await frames.printer("fdm-a", "bed-not-cleared")

        record = (await engineer.get(f"/api/print-jobs/{job_id}")).json()
        what = [h["what"] for h in record["history"]]
        assert what[0] == "queued" and {"released", "ready", "assigned", "sliced", "started", "done"} <= set(what)
        assert record["files"]["fdm-a"]["kind"] == "gcode" and record["files"]["fdm-a"]["slicer"] == "prusa-slicer"
        print_file = (await engineer.get(f"/api/artifacts/{record['files']['fdm-a']['artifact_id']}/provenance")).json()
        assert print_file["chain"][0]["provenance"]["inputs"] == [{"artifact_id": artifact_id}]

        # The next job waits for the operator's "bed cleared".
        await frames.until(
            lambda f: f["type"] == "print_job" and f["id"] == second_id and "bed-not-cleared" in f["reason"]
        )
        assert (await wait_job(tech, second_id, "ready"))["printer_id"] is None
        assert (await engineer.post("/api/printers/fdm-a/bed-cleared")).status_code == 403
        cleared = await tech.post("/api/printers/fdm-a/bed-cleared")
        assert cleared.status_code == 200 and cleared.json()["bed_clear"] is True
        assigned = await frames.job(second_id, event="assigned")
        assert assigned["printer_id"] == "fdm-a"
        assert (await tech.post(f"/api/print-jobs/{second_id}/cancel")).status_code == 200

        fleet = (await engineer.get("/api/sites/site-a/fleet")).json()
        assert [p["id"] for p in fleet["printers"]] == ["fdm-a"]
        assert "api_key_ref" not in str(fleet)


async def test_a_job_no_printer_can_take_is_refused_with_each_printers_reason(
    live_sqlite: PrintingServer, world_sqlite: World
) -> None:
    world, live = world_sqlite, live_sqlite
    room_id = maker_room(world)
    async with (
        live.http(world["technician"]) as tech,
        live.http(world["engineer"]) as engineer,
        RoomClient(live.base_url, room_id, world["engineer"].token) as room,
    ):
        frames = Frames(room)
        await add_printer(tech, "fdm-small", build_volume_mm=[120, 120, 120])
        await add_printer(
            tech,
            "sla-a",
            technology="sla",
            material="resin_biocompatible",
            nozzle_mm=None,
            layer_height_mm=0.05,
            build_volume_mm=[145, 145, 185],
        )
        case_id = await new_case(engineer)
        artifact_id = await upload_part(
            engineer, case_id, trimesh.creation.box(extents=(300.0, 250.0, 200.0)), "big.ply"
        )
        response = await tech.post(
            "/api/print-jobs", json={"artifact_id": artifact_id, "part_class": "anatomical_model"}
        )
        job_id = response.json()["id"]

        refused = await frames.job(job_id, "refused")
        assert "no printer in the fleet can print it" in refused["reason"]
        job = (await tech.get(f"/api/print-jobs/{job_id}")).json()
        reasons = job["preflight"]["reasons"]
        assert set(reasons) == {"fdm-small", "sla-a"}
        assert any("too small" in r for r in reasons["fdm-small"])
        assert any("too small" in r for r in reasons["sla-a"])
        assert [h["what"] for h in job["history"]][-1] == "refused"

        # The case's consultation report lists the job and where it stands.
        consult = (await engineer.post("/api/rooms", json={"title": "Plan", "case_id": case_id})).json()
        report = await engineer.get(f"/api/rooms/{consult['id']}/report.pdf", timeout=60)
        assert report.status_code == 200, report.text
        text = "".join(page.extract_text() or "" for page in pypdf.PdfReader(io.BytesIO(report.content)).pages)
        assert "refused" in text and job_id[:8] in text.replace("\n", "")


async def test_a_guide_is_refused_without_an_approved_plan(live_sqlite: PrintingServer, world_sqlite: World) -> None:
    world, live = world_sqlite, live_sqlite
    async with live.http(world["surgeon"]) as surgeon, live.http(world["observer"]) as observer:
        case_id = await new_case(surgeon)
        guide = add_device_artifact(
            live, case_id=case_id, kind="guide", mesh=small_bone(), created_by=world["surgeon"].id
        )
        response = await surgeon.post("/api/print-jobs", json={"artifact_id": guide.id, "part_class": "guide"})
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "plan_not_approved"
        as_model = await surgeon.post(
            "/api/print-jobs", json={"artifact_id": guide.id, "part_class": "anatomical_model"}
        )
        assert as_model.status_code == 422  # a guide cannot slip past the gate as an anatomical model
        denied = await observer.post("/api/print-jobs", json={"artifact_id": guide.id, "part_class": "guide"})
        assert denied.status_code == 403
        assert (await surgeon.get("/api/print-jobs")).json() == []


async def test_pause_resume_and_cancel_reach_the_printer_and_the_room(
    live_sqlite: PrintingServer, world_sqlite: World
) -> None:
    world, live = world_sqlite, live_sqlite
    room_id = maker_room(world)
    async with (
        live.http(world["technician"]) as tech,
        live.http(world["engineer"]) as engineer,
        RoomClient(live.base_url, room_id, world["engineer"].token) as room,
    ):
        frames = Frames(room)
        await add_printer(tech, "fdm-slow", connection={"layer_s": 1.0, "speed": 2.0})  # half a second a layer
        case_id = await new_case(engineer)
        artifact_id = await upload_part(engineer, case_id, small_bone())
        job_id = (
            await tech.post("/api/print-jobs", json={"artifact_id": artifact_id, "part_class": "anatomical_model"})
        ).json()["id"]
        await frames.job(job_id, "printing", event="started")

        assert (await tech.post(f"/api/print-jobs/{job_id}/resume")).status_code == 409  # not paused
        assert (await tech.post(f"/api/print-jobs/{job_id}/pause")).status_code == 200
        await frames.job(job_id, "paused", event="paused")
        await frames.printer("fdm-slow", "paused")
        camera = await tech.get("/api/printers/fdm-slow/camera.jpg")  # the simulator's synthetic camera
        assert camera.status_code == 200 and camera.headers["content-type"] == "image/jpeg"
        assert camera.content[:2] == b"\xff\xd8"
        assert (await tech.get("/api/printers/fdm-slow/camera")).json()["snapshot"].endswith("/camera.jpg")
        assert (await tech.post(f"/api/print-jobs/{job_id}/resume")).status_code == 200
        await frames.job(job_id, "printing", event="resumed")
        assert (await tech.post(f"/api/print-jobs/{job_id}/cancel")).status_code == 200
        cancelled = await frames.job(job_id, "cancelled")
        assert cancelled["progress"] < 1.0
        await frames.printer("fdm-slow", "bed-not-cleared")
        what = [h["what"] for h in (await tech.get(f"/api/print-jobs/{job_id}")).json()["history"]]
        assert what[-6:] == [
            "pause_requested",
            "paused",
            "resume_requested",
            "resumed",
            "cancel_requested",
            "cancelled",
        ]

        retried = await tech.post(f"/api/print-jobs/{job_id}/retry")
        assert retried.status_code == 200 and retried.json()["state"] == "ready"
        waiting = await frames.job(job_id, "ready", event="waiting")
        assert "bed-not-cleared" in waiting["reason"]


async def test_a_host_outage_interrupts_the_job_and_monitoring_resumes(
    live_sqlite: PrintingServer, world_sqlite: World
) -> None:
    world, live = world_sqlite, live_sqlite
    room_id = maker_room(world)
    async with (
        live.http(world["technician"]) as tech,
        live.http(world["engineer"]) as engineer,
        RoomClient(live.base_url, room_id, world["engineer"].token) as room,
    ):
        frames = Frames(room)
        await add_printer(tech, "fdm-far", connection={"layer_s": 1.0, "speed": 8.0})
        case_id = await new_case(engineer)
        artifact_id = await upload_part(engineer, case_id, small_bone())
        job_id = (
            await tech.post("/api/print-jobs", json={"artifact_id": artifact_id, "part_class": "anatomical_model"})
        ).json()["id"]
        await frames.job(job_id, "printing", event="started")

        simulator = live.driver("fdm-far")
        simulator.go_unreachable()  # type: ignore[attr-defined]
        offline = await frames.printer("fdm-far", "offline")
        assert "unreachable" in offline["message"]
        interrupted = await frames.job(job_id, "interrupted")
        assert "printer host unreachable" in interrupted["reason"]
        assert (await tech.get("/api/printers/fdm-far")).json()["state"] == "offline"

        simulator.come_back()  # type: ignore[attr-defined]
        resumed = await frames.job(job_id, "printing", event="monitoring_resumed")
        assert resumed["printer_id"] == "fdm-far"
        await frames.job(job_id, "done")
        history = (await tech.get(f"/api/print-jobs/{job_id}")).json()["history"]
        assert [h["what"] for h in history][-3:] == ["interrupted", "monitoring_resumed", "done"]


async def test_operators_reorder_the_queue_and_assign_a_printer_by_hand(
    live_sqlite: PrintingServer, world_sqlite: World
) -> None:
    world, live = world_sqlite, live_sqlite
    async with live.http(world["technician"]) as tech, live.http(world["engineer"]) as engineer:
        await add_printer(tech, "fdm-1")
        await add_printer(tech, "fdm-2", build_volume_mm=[300, 300, 300])
        case_id = await new_case(engineer)
        artifact_id = await upload_part(engineer, case_id, small_bone())
        body = {"artifact_id": artifact_id, "part_class": "anatomical_model"}
        first = (await engineer.post("/api/print-jobs", json=body | {"priority": "urgent"})).json()["id"]
        second = (await engineer.post("/api/print-jobs", json=body)).json()["id"]
        for job_id in (first, second):
            await wait_job(engineer, job_id, "ready", where=lambda j: j["wait_reason"].startswith("waiting for a tech"))
        assert (await engineer.get("/api/sites/site-a/fleet")).json()["queue"] == [first, second]  # urgent first

        order = {"job_ids": [second, first]}
        assert (await engineer.post("/api/sites/site-a/print-queue/order", json=order)).status_code == 403
        reordered = await tech.post("/api/sites/site-a/print-queue/order", json=order)
        assert reordered.status_code == 200 and reordered.json() == [second, first]

        # fdm-1 is the smaller printer the scheduler would pick; the technician wants fdm-2.
        assert (await tech.post(f"/api/print-jobs/{second}/start", json={"printer_id": "fdm-2"})).status_code == 200
        started = await wait_job(tech, second, "slicing", "sliced", "starting", "printing", "done")
        assert started["printer_id"] == "fdm-2" and started["assigned_printer_id"] == "fdm-2"
        assert (await tech.post(f"/api/print-jobs/{second}/cancel")).status_code == 200
        what = [h["what"] for h in (await tech.get(f"/api/print-jobs/{second}")).json()["history"]]
        assert what.index("reordered") < what.index("released") < what.index("assigned")


async def test_a_guides_fit_check_copy_prints_in_pla_while_the_guide_needs_resin_and_both_need_the_plan(
    live_sqlite: PrintingServer, world_sqlite: World
) -> None:
    world, live = world_sqlite, live_sqlite
    async with (
        live.http(world["technician"]) as tech,
        live.http(world["surgeon"]) as surgeon,
        RoomClient(live.base_url, maker_room(world), world["engineer"].token) as room,
    ):
        frames = Frames(room)
        await add_printer(tech, "fdm-a")
        case_id = await new_case(surgeon)
        guide = add_device_artifact(
            live, case_id=case_id, kind="guide", mesh=design_guide(), created_by=world["surgeon"].id
        )
        copy = {"artifact_id": guide.id, "part_class": "guide", "purpose": "fit_check"}
        unapproved = await tech.post("/api/print-jobs", json=copy)
        assert unapproved.status_code == 409 and unapproved.json()["error"]["code"] == "plan_not_approved"
        model_copy = await tech.post("/api/print-jobs", json=copy | {"part_class": "anatomical_model"})
        assert model_copy.status_code == 422  # a guide artifact is printed as a guide, copy or not
        await approve_plan(surgeon, case_id, [guide.id])

        clinical = (await tech.post("/api/print-jobs", json={"artifact_id": guide.id, "part_class": "guide"})).json()
        refused = await frames.job(clinical["id"], "refused")
        assert "FDM printer cannot print a guide: it needs an SLA/DLP resin printer" in refused["reason"]

        queued = await tech.post("/api/print-jobs", json=copy)
        assert queued.status_code == 201, queued.text
        done = await frames.job(queued.json()["id"], "done")
        assert done["printer_id"] == "fdm-a" and done["purpose"] == "fit_check"
        job = (await tech.get(f"/api/print-jobs/{done['id']}")).json()
        assert job["purpose"] == "fit_check" and job["preflight"]["requirements"]["purpose"] == "fit_check"
        first = job["history"][0]
        assert (first["what"], first["part_class"], first["purpose"]) == ("queued", "guide", "fit_check")
        print_file = (await tech.get(f"/api/artifacts/{job['files']['fdm-a']['artifact_id']}")).json()
        assert print_file["name"] == "test guide (fit check) for FDM-A"
