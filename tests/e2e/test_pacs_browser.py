"""End-to-end: a study pulled from the hospital PACS (a private real Orthanc with DICOMweb) from the
Imaging tab, in Chromium: search for the case's patient, retrieve the study, follow the job, and the
series is in the case with its volume, for the other user of the room too.

This module's server is configured with the Orthanc's DICOMweb root (TRINITY_PACS_URL); the session's
Orthanc comes from tests/conftest.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from tests.support.browser import User, create_room, demo_server, open_pair
from tests.support.browser_imaging import create_case
from tests.support.orthanc import OrthancServer
from tests.support.phantoms import FAKE_PATIENT, Grid, write_series

pytestmark = [pytest.mark.browser, pytest.mark.orthanc]

GRID = Grid(rows=32, columns=40, pixel_spacing_mm=(1.0, 1.0), slice_count=12, slice_step_mm=2.0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, orthanc: OrthancServer) -> Iterator[str]:
    """The demo server of conftest.py, with the Orthanc as its PACS."""
    with demo_server(tmp_path_factory.mktemp("trinity-e2e-pacs"), {"TRINITY_PACS_URL": orthanc.dicomweb_url}) as url:
        yield url


def _study_in_pacs(orthanc: OrthancServer, folder: Path, patient_id: str) -> str:
    """A 12-slice CT of `patient_id` stored in the PACS; returns its Study Instance UID."""
    patient = {**FAKE_PATIENT, "PatientID": patient_id, "AccessionNumber": f"ACC-{patient_id[-8:]}"}
    written = write_series(folder, grid=GRID, patient=patient, supersample=1)
    assert {orthanc.upload(p)["Status"] for p in written.paths} == {"Success"}
    return str(pydicom.dcmread(written.paths[0], stop_before_pixels=True).StudyInstanceUID)


def test_a_study_pulled_from_the_pacs_lands_in_the_case_for_everyone(
    browser: Any, server: str, orthanc: OrthancServer, users: list[User], tmp_path: Path
) -> None:
    patient_id = f"E2E-{uuid.uuid4().hex[:8]}"
    study_uid = _study_in_pacs(orthanc, tmp_path / "pacs", patient_id)
    case_id = create_case(server, "E2E-PACS", patient_id=patient_id)
    room = create_room(server, "e2e pacs", case_id)
    a, b = open_pair(browser, server, room, users)

    a.page.click("[data-testid=tab-imaging]")
    a.page.wait_for_selector("[data-testid=series-empty]")
    # No patient ID typed: the PACS is asked for the case's own patient.
    a.page.click("[data-testid=pacs-section] > summary")
    a.page.click("[data-testid=pacs-search]")
    study = a.page.wait_for_selector(f"[data-testid=pacs-study][data-uid='{study_uid}']", timeout=10_000)
    assert a.page.locator("[data-testid=pacs-study]").count() == 1
    assert "12 images" in study.inner_text()
    assert patient_id in study.inner_text()
    study.query_selector("[data-testid=pacs-retrieve]").click()

    # The job runs with progress in the jobs panel; the retrieved study goes through the usual ingest.
    b.page.click("[data-testid=tab-jobs]")
    b.page.wait_for_selector("[data-testid=job-item][data-kind='imaging.pacs_pull']", timeout=5_000)
    a.page.wait_for_selector("[data-testid=pacs-job][data-state=succeeded]", timeout=60_000)
    summary = a.page.inner_text("[data-testid=pacs-summary]")
    assert summary.startswith("12 retrieved: 12 accepted"), summary
    b.page.wait_for_selector("[data-testid=job-item][data-kind='imaging.pacs_pull'][data-state=succeeded]")

    series = a.page.wait_for_selector("[data-testid=series-item][data-has-volume=true]", timeout=10_000)
    assert "40 \u00d7 32 \u00d7 12 voxels" in series.inner_text()
    report = a.page.wait_for_selector("[data-testid=ingest-report]:has-text('PACS retrieval')")
    assert "12 accepted" in report.inner_text()

    # The other user of the room sees the new series in their Imaging tab.
    b.page.click("[data-testid=tab-imaging]")
    other = b.page.wait_for_selector("[data-testid=series-item][data-has-volume=true]", timeout=10_000)
    assert "40 \u00d7 32 \u00d7 12 voxels" in other.inner_text()
