"""Studies from a real PACS (Orthanc) into cases: pulled over DICOMweb by the owning site, and pushed to
Trinity's C-STORE SCP, both ending in the same de-identified ingest."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.imaging_flow import create_case, wait_job, wait_spool_empty
from tests.support.orthanc import OrthancServer
from tests.support.phantoms import FAKE_PATIENT, Grid, write_series
from tests.support.services import free_port
from tests.support.world import LiveServer, World

pytestmark = pytest.mark.orthanc


async def test_owning_site_pulls_a_study_from_the_pacs_into_a_case(
    world_sqlite: World, orthanc: OrthancServer, tmp_path: Path
) -> None:
    written = write_series(
        tmp_path / "ct",
        grid=Grid(rows=24, columns=24, slice_count=10),
        patient={**FAKE_PATIENT, "PatientID": "PULL-0001"},
    )
    study_ids = {orthanc.upload(p)["ParentStudy"] for p in written.paths}
    assert len(study_ids) == 1
    settings = world_sqlite.settings.model_copy(update={"pacs_url": orthanc.dicomweb_url})
    async with LiveServer(settings) as live, live.http(world_sqlite["surgeon"]) as http:
        case_id = await create_case(http)
        found = await http.post(f"/api/cases/{case_id}/imaging/pacs/query", json={"patient_id": "PULL-0001"})
        assert found.status_code == 200, found.text
        studies = found.json()
        assert len(studies) == 1 and studies[0]["PatientID"] == "PULL-0001"
        pulled = await http.post(
            f"/api/cases/{case_id}/imaging/pacs/pull", json={"study_uid": studies[0]["StudyInstanceUID"]}
        )
        assert pulled.status_code == 202, pulled.text
        job = await wait_job(http, pulled.json()["id"])
        assert job["state"] == "succeeded", job["error"]
        assert job["result"]["retrieved"] == 10 and job["result"]["accepted"] == 10
        series = (await http.get(f"/api/cases/{case_id}/imaging/series")).json()
        assert len(series) == 1 and series[0]["volume"]["size"] == [24, 24, 10]
        await wait_spool_empty(settings.spool_dir)
        missing = await http.post(f"/api/cases/{case_id}/imaging/pacs/pull", json={"study_uid": "1.2.3.4.5"})
        failed = await wait_job(http, missing.json()["id"])
        assert failed["state"] == "failed", failed
        await wait_spool_empty(settings.spool_dir)  # a failed pull leaves no retrieve folder behind

        async with live.http(world_sqlite["b-surgeon"]) as other:
            refused = await other.post(f"/api/cases/{case_id}/imaging/pacs/query", json={})
            assert refused.status_code == 404


async def test_pacs_not_configured_is_a_clear_error(world_sqlite: World, live_sqlite: LiveServer) -> None:
    async with live_sqlite.http(world_sqlite["surgeon"]) as http:
        case_id = await create_case(http)
        answer = await http.post(f"/api/cases/{case_id}/imaging/pacs/pull", json={"study_uid": "1.2.3"})
        assert answer.status_code == 422 and "TRINITY_PACS_URL" in answer.json()["error"]["message"]


async def test_a_pacs_pushes_a_study_to_the_scp_and_it_lands_in_the_patients_case(
    world_sqlite: World, orthanc: OrthancServer, tmp_path: Path
) -> None:
    known = write_series(
        tmp_path / "known",
        grid=Grid(rows=20, columns=20, slice_count=6),
        patient={**FAKE_PATIENT, "PatientID": "PUSH-0001"},
    )
    unknown = write_series(
        tmp_path / "unknown",
        grid=Grid(rows=20, columns=20, slice_count=5),
        patient={**FAKE_PATIENT, "PatientID": "PUSH-0002"},
    )
    known_study = {orthanc.upload(p)["ParentStudy"] for p in known.paths}.pop()
    unknown_study = {orthanc.upload(p)["ParentStudy"] for p in unknown.paths}.pop()
    port = free_port()
    settings = world_sqlite.settings.model_copy(
        update={
            "dicom_scp_enabled": True,
            "dicom_scp_port": port,
            "dicom_scp_allowed_aes": f"{orthanc.aet}=site-a",
        }
    )
    async with LiveServer(settings) as live, live.http(world_sqlite["surgeon"]) as http:
        body = {"label": "PUSHED", "patient_id": "PUSH-0001"}
        case_id = (await http.post("/api/cases", json=body)).json()["id"]
        orthanc.set_modality("trinity", settings.dicom_scp_ae_title, "127.0.0.1", port)
        sent = await asyncio.to_thread(orthanc.store_to_modality, "trinity", [known_study, unknown_study])
        assert sent.status_code == 200, sent.text
        for _ in range(300):
            series = (await http.get(f"/api/cases/{case_id}/imaging/series")).json()
            if series and series[0]["volume"]:
                break
            await asyncio.sleep(0.1)
        assert len(series) == 1 and series[0]["instances"] == 6 and series[0]["volume"]["size"] == [20, 20, 6]
        async with live.http(world_sqlite["admin"]) as admin:
            for _ in range(300):
                cases = (await admin.get("/api/cases")).json()
                new = [c for c in cases if c["label"].startswith("SCP-")]
                if new:
                    break
                await asyncio.sleep(0.1)
            assert len(new) == 1, cases  # the unknown patient got a case of its own at the sending site
            identity = (await admin.get(f"/api/cases/{new[0]['id']}/identity")).json()
            assert identity["patient_id"] == "PUSH-0002"
