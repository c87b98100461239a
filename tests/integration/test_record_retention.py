"""Retention: erasing a case leaves no file or row of it behind (every table and the blob folder are
scanned), keeps the audit rows, and keeps a file another case of the site shares."""

from __future__ import annotations

import os

import trimesh
from sqlalchemy import select, text

from server.core import audit
from server.core.auth import new_id
from server.core.db import Database
from server.core.job_store import JobRecord
from server.imaging.models import ImagingInstance, ImagingSeries, ImagingStudy, IngestReport, UidLink
from server.rooms.client import RoomClient
from server.tables import metadata
from tests.support.imaging_flow import create_case
from tests.support.record import RecordServer, add_artifact, data_url, png, room_with_case
from tests.support.world import PASSWORD, World


def _imaging(live: RecordServer, case_id: str, shared: bytes, job_state: str) -> tuple[list[str], str]:
    """Rows an ingest would have written (study, series, two instances, UID links, report, job)."""
    blobs = live.app.state.blobs
    own = blobs.put_bytes(b"DICM-only-this-case" + case_id.encode(), site_id="site-a")
    common = blobs.put_bytes(shared, site_id="site-a")
    db = Database(live.settings)
    job_id = new_id()
    with db.session() as session:
        study = ImagingStudy(id=new_id(), case_id=case_id, site_id="site-a", study_uid="2.25.1", modalities="CT")
        series = ImagingSeries(id=new_id(), study_id=study.id, case_id=case_id, series_uid="2.25.2", modality="CT")
        session.add(study)
        session.flush()  # no ORM relationships: insert parents first by hand
        session.add(series)
        session.flush()
        for n, ref in enumerate((own, common)):
            session.add(
                ImagingInstance(
                    id=new_id(),
                    series_id=series.id,
                    study_id=study.id,
                    case_id=case_id,
                    sop_uid=f"2.25.3.{n}",
                    blob_sha256=ref.sha256,
                    size_bytes=ref.size,
                )
            )
        session.add(UidLink(case_id=case_id, new_uid="2.25.1", original_uid="1.2.840.1", level="study"))
        session.add(IngestReport(id=new_id(), case_id=case_id, source="scp", created_by="system", accepted=2))
        session.add(
            JobRecord(
                id=job_id,
                kind="imaging.ingest",
                state=job_state,
                submitted_by="system",
                params={"case_id": case_id, "site_id": "site-a"},
            )
        )
        session.commit()
    db.close()
    return [own.sha256, common.sha256], job_id


def _scan(world: World, needles: set[str]) -> dict[str, list[str]]:
    """Every table but the audit trail, every column, as text: where does any needle still appear?"""
    found: dict[str, list[str]] = {}
    db = Database(world.settings)
    with db.engine.connect() as conn:
        for table in metadata.sorted_tables:
            if table.name == "audit_events":
                continue
            for row in conn.execute(select(table)):
                blob = " ".join(str(v) for v in row)
                hits = [n for n in needles if n in blob]
                if hits:
                    found.setdefault(table.name, []).extend(hits)
    db.close()
    return found


async def test_erasing_a_case_leaves_no_file_or_row_behind(world: World) -> None:
    async with RecordServer(world.settings) as live, live.http(world["surgeon"]) as surgeon:
        case_id, room_id = await room_with_case(surgeon, world, "ERASE-001")
        other_case = await create_case(surgeon, "KEEP-002")
        shared = b"identical bytes in two cases"
        shas, job_id = _imaging(live, case_id, shared, job_state="running")
        kept_shas, _ = _imaging(live, other_case, shared, job_state="succeeded")
        mesh = trimesh.creation.icosphere(subdivisions=2, radius=10.0).export(file_type="stl")
        uploaded = await surgeon.post(
            f"/api/cases/{case_id}/meshes",
            params={"room_id": room_id},
            files=[("file", ("bone.stl", bytes(mesh), "model/stl"))],
        )
        assert uploaded.status_code == 201, uploaded.text
        bone = uploaded.json()
        guide = add_artifact(
            live,
            case_id=case_id,
            room_id=room_id,
            kind="guide",
            name="guide",
            data=b"guide-bytes",
            inputs=[bone["id"]],
            created_by=world["engineer"].id,
        )
        async with RoomClient(live.base_url, room_id, world["surgeon"].token) as client:
            await client.send_op(
                "annotation.create", {"id": "tumour-margin", "kind": "note", "data": {"text": "margin 1 cm"}}
            )
        snapshot = (
            await surgeon.post(
                f"/api/rooms/{room_id}/snapshots",
                json={
                    "image": data_url(png(40, 30, (1, 2, 3))),
                    "camera": {"position": [1, 2, 3], "target": [0, 0, 0]},
                },
            )
        ).json()
        plan = (await surgeon.post(f"/api/rooms/{room_id}/plans", json={"artifact_ids": [guide.id]})).json()
        decision = {"decision": "approved", "password": PASSWORD}
        assert (
            await surgeon.post(f"/api/rooms/{room_id}/plans/{plan['id']}/decision", json=decision)
        ).status_code == 200
        files = [f["sha256"] for f in bone["files"].values()] + [guide.files["stl"]["sha256"], snapshot["sha256"]]
        erase = {"password": PASSWORD, "reason": "retention period ended"}
        url = f"/api/admin/cases/{case_id}/erase"

        async with live.http(world["admin"]) as admin:
            assert (await surgeon.post(url, json=erase)).status_code == 403
            async with live.http(world["b-admin"]) as b_admin:
                assert (await b_admin.post(url, json=erase)).status_code == 404
            wrong = await admin.post(url, json={**erase, "password": "wrong password"})
            assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "reauthentication_failed"
            busy = await admin.post(url, json=erase)
            assert busy.status_code == 409 and "running" in busy.json()["error"]["message"]
            db = Database(world.settings)
            with db.engine.begin() as conn:
                conn.execute(text("UPDATE jobs SET state = 'failed' WHERE id = :id"), {"id": job_id})
            db.close()
            erased = await admin.post(url, json=erase)
            assert erased.status_code == 200, erased.text
            result = erased.json()
            assert result["rooms"] == [room_id] and result["rows"]["imaging_instances"] == 2
            assert result["files_removed"] == len(set(files)) + 1  # the shared DICOM file stays
            room = (await surgeon.get(f"/api/rooms/{room_id}")).json()
            assert room["case_id"] is None and room["archived"]
            assert (await surgeon.get(f"/api/cases/{case_id}")).status_code == 404
            assert (await surgeon.get(f"/api/rooms/{room_id}/events")).json() == []

    needles = {case_id, bone["id"], guide.id, plan["id"], snapshot["id"], job_id, "tumour-margin", *files, shas[0]}
    assert _scan(world, needles) == {}
    stored = {name for _, _, names in os.walk(world.settings.blob_dir) for name in names}
    assert not stored & (set(files) | {shas[0]})
    assert shas[1] in stored and kept_shas[1] == shas[1]  # still used by KEEP-002

    db = Database(world.settings)
    with db.session() as session:
        erased_rows = session.exec(select(audit.AuditEvent).where(audit.AuditEvent.case_id == case_id)).all()
        assert {"case.create", "case.erase", "plan.approve"} <= {e[0].action for e in erased_rows}
        assert audit.verify_chain(session).ok
    db.close()
