"""Snapshots and the consultation report: PNG captures with their camera stored and shown in the room;
the PDF has every section (text extracted with pypdf) and the snapshot images."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader

from server.record.print_hooks import print_outcome
from server.record.report_pdf import SECTIONS
from tests.support.record import RecordServer, add_artifact, data_url, png, room_with_case
from tests.support.world import PASSWORD, World

CAMERA = {"position": [120.0, -80.0, 60.0], "target": [0.0, 0.0, 10.0], "up": [0.0, 0.0, 1.0], "fov_deg": 40}


async def test_snapshots_are_validated_stored_and_shown(world_sqlite: World) -> None:
    world = world_sqlite
    async with RecordServer(world.settings) as live, live.http(world["surgeon"]) as surgeon:
        _, room_id = await room_with_case(surgeon, world)
        url = f"/api/rooms/{room_id}/snapshots"
        body = {"image": data_url(png()), "camera": CAMERA, "visible_models": [{"id": "mandible", "version": 2}]}
        created = await surgeon.post(url, json=body)
        assert created.status_code == 201, created.text
        snap = created.json()
        assert (snap["width"], snap["height"], snap["camera"]["fov_deg"]) == (64, 48, 40.0)
        image = await surgeon.get(snap["url"])
        assert image.status_code == 200 and image.content == png()
        assert (await surgeon.post(url, json={**body, "camera": None})).status_code == 422  # 3D view needs its camera
        assert (await surgeon.post(url, json={**body, "image": data_url(b"GIF89a" + b"0" * 40)})).status_code == 422
        assert (await surgeon.post(url, json={**body, "image": "data:image/png;base64,!!!"})).status_code == 422
        broken = png()[:-20]
        assert (await surgeon.post(url, json={**body, "image": data_url(broken)})).status_code == 422
        async with live.http(world["observer"]) as observer:
            assert (await observer.post(url, json=body)).status_code == 403
            assert [s["id"] for s in (await observer.get(url)).json()] == [snap["id"]]
        async with live.http(world["b-admin"]) as stranger:
            assert (await stranger.get(snap["url"])).status_code == 404


@pytest.mark.parametrize("recorded", [True, False])
async def test_the_report_pdf_has_every_section_and_the_snapshots(world_sqlite: World, recorded: bool) -> None:
    world = world_sqlite
    async with RecordServer(world.settings) as live, live.http(world["surgeon"]) as surgeon:
        case_id, room_id = await room_with_case(surgeon, world, "MAND-2026-014")
        bone = add_artifact(
            live,
            case_id=case_id,
            room_id=room_id,
            kind="mesh",
            name="mandible",
            data=b"bone",
            created_by=world["engineer"].id,
        )
        guide = add_artifact(
            live,
            case_id=case_id,
            room_id=room_id,
            kind="guide",
            name="resection guide",
            data=b"guide",
            inputs=[bone.id],
            created_by=world["engineer"].id,
        )
        if recorded:
            add_artifact(
                live,
                case_id=case_id,
                room_id=room_id,
                kind="recording",
                name="consultation video",
                data=b"webm",
                created_by=world["surgeon"].id,
                meta={"duration_s": 1260},
            )
        from server.rooms.client import RoomClient

        async with RoomClient(live.base_url, room_id, world["surgeon"].token) as client:
            data = {"entry": [0.0, 0.0, 0.0], "target": [0.0, 0.0, 42.0], "diameter_mm": 2.5}
            await client.send_op(
                "annotation.create", {"id": "screw-1", "kind": "trajectory", "data": data, "label": "Screw 1"}
            )
        shots = [(png(320, 200, (30, 90, 200)), "view3d"), (png(256, 256, (220, 220, 220)), "slice")]
        for image, kind in shots:
            body = {"image": data_url(image), "kind": kind, "label": f"{kind} capture"}
            body |= {"camera": CAMERA} if kind == "view3d" else {"slice": {"orientation": "axial", "index": 57}}
            assert (await surgeon.post(f"/api/rooms/{room_id}/snapshots", json=body)).status_code == 201
        plan = (
            await surgeon.post(
                f"/api/rooms/{room_id}/plans", json={"artifact_ids": [guide.id], "notes": "Two segments"}
            )
        ).json()
        decision = {"decision": "approved", "comment": "Approved for printing", "password": PASSWORD}
        assert (
            await surgeon.post(f"/api/rooms/{room_id}/plans/{plan['id']}/decision", json=decision)
        ).status_code == 200
        await print_outcome(live.app, artifact_id=guide.id, print_job_id="pj-0042", succeeded=True, printer="Form 3B")

        async with live.http(world["observer"]) as observer:
            assert (await observer.get(f"/api/rooms/{room_id}/report.pdf")).status_code == 403
        response = await surgeon.get(f"/api/rooms/{room_id}/report.pdf")
        assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(response.content))
    text = "\n".join(page.extract_text() for page in reader.pages)
    flat = " ".join(text.split())
    for heading in SECTIONS:
        assert heading in flat, heading
    for expected in (
        "MAND-2026-014",
        "Hospital A",
        "Hospital B",
        "Surgeon",
        "B-Surgeon",
        "Engineer",  # case, sites, people
        "room.join",
        "plan.propose",
        "plan.approve",  # timeline
        "APPROVED",
        "Approved for printing",
        "Screw 1",
        "42.0 mm",
        "Two segments",
        plan["content_hash"][:20],
        "resection guide v1",
        "mandible v1",
        "trimesh 4.4",  # provenance back to the bone model
        "pj-0042",
        "Form 3B",
        "finished",  # print outcome
        "view3d capture",
        "axial",
    ):
        assert expected in flat, expected
    assert "Doe" not in flat and "PHANTOM-4711" not in flat  # de-identified
    if recorded:
        assert "consultation video v1" in flat and "1260" in flat
    else:
        assert "No recording reference" in flat
    images = [image for page in reader.pages for image in page.images]
    assert sorted(image.image.size for image in images) == [(256, 256), (320, 200)]
