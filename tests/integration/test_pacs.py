"""Trinity against a real PACS (a private Orthanc): search and pull a study over DICOMweb, and receive a
study Orthanc pushes with C-STORE to Trinity's SCP."""

from __future__ import annotations

import queue
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest

from server.imaging.pacs_client import (
    PacsHttpError,
    PacsUnreachable,
    RetrieveLimitExceeded,
    StudyQuery,
    retrieve_study,
    search_series,
    search_studies,
)
from server.imaging.scp import ScpConfig, StoreSCP
from tests.support.orthanc import OrthancServer
from tests.support.phantoms import FAKE_PATIENT, Grid, write_series
from tests.support.services import free_port

pytestmark = pytest.mark.orthanc

GRID = Grid(rows=32, columns=32, pixel_spacing_mm=(1.0, 1.0), slice_count=8, slice_step_mm=2.0)


@dataclass
class UploadedStudy:
    patient_id: str
    accession_number: str
    study_uid: str
    orthanc_id: str
    originals: dict[str, Path]  # SOP Instance UID -> the file uploaded


@pytest.fixture
def study(orthanc: OrthancServer, tmp_path: Path) -> UploadedStudy:
    """An 8-slice 32x32 CT study of a patient no other test uses, stored in Orthanc."""
    tag = uuid.uuid4().hex[:8]
    patient = {**FAKE_PATIENT, "PatientID": f"PACS-{tag}", "AccessionNumber": f"ACC-{tag}"}
    written = write_series(tmp_path / "originals", grid=GRID, patient=patient, supersample=1)
    answers = [orthanc.upload(path) for path in written.paths]
    assert {a["Status"] for a in answers} == {"Success"}
    originals = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in written.paths}
    study_uid = str(pydicom.dcmread(written.paths[0], stop_before_pixels=True).StudyInstanceUID)
    return UploadedStudy(
        patient["PatientID"], patient["AccessionNumber"], study_uid, answers[0]["ParentStudy"], originals
    )


def assert_same_instances(received: list[Path], study: UploadedStudy) -> None:
    """Every original arrived once, decodes without `force`, with identical pixels."""
    by_uid = {str(pydicom.dcmread(p).SOPInstanceUID): p for p in received}
    assert len(by_uid) == len(received) == len(study.originals)
    assert by_uid.keys() == study.originals.keys()
    for uid, path in by_uid.items():
        np.testing.assert_array_equal(
            pydicom.dcmread(path).pixel_array, pydicom.dcmread(study.originals[uid]).pixel_array
        )


def test_search_finds_the_study_by_patient_id(orthanc: OrthancServer, study: UploadedStudy) -> None:
    [found] = search_studies(orthanc.dicomweb_url, StudyQuery(patient_id=study.patient_id))
    assert found["StudyInstanceUID"] == study.study_uid
    assert found["PatientID"] == study.patient_id
    assert found["PatientName"] == FAKE_PATIENT["PatientName"]
    assert found["ModalitiesInStudy"] == "CT"
    assert int(found["NumberOfStudyRelatedInstances"]) == len(study.originals)


def test_search_combines_accession_date_and_modality_filters(orthanc: OrthancServer, study: UploadedStudy) -> None:
    date = FAKE_PATIENT["StudyDate"]
    query = StudyQuery(accession_number=study.accession_number, study_date=f"{date}-{date}", modalities_in_study="CT")
    assert [s["StudyInstanceUID"] for s in search_studies(orthanc.dicomweb_url, query)] == [study.study_uid]
    other_day = StudyQuery(accession_number=study.accession_number, study_date="19990101")
    assert search_studies(orthanc.dicomweb_url, other_day) == []
    assert (
        search_studies(
            orthanc.dicomweb_url, StudyQuery(accession_number=study.accession_number, modalities_in_study="MR")
        )
        == []
    )


def test_search_series_lists_the_series_of_a_study(orthanc: OrthancServer, study: UploadedStudy) -> None:
    [series] = search_series(orthanc.dicomweb_url, study.study_uid)
    assert series["Modality"] == "CT"
    assert int(series["NumberOfSeriesRelatedInstances"]) == len(study.originals)
    assert search_series(orthanc.dicomweb_url, study.study_uid, modality="MR") == []


def test_retrieve_study_writes_every_instance_with_identical_pixels(
    orthanc: OrthancServer, study: UploadedStudy, tmp_path: Path
) -> None:
    files = retrieve_study(
        orthanc.dicomweb_url, study.study_uid, tmp_path / "pulled", max_bytes=10_000_000, max_files=100
    )
    assert all(f.parent == tmp_path / "pulled" for f in files)
    assert_same_instances(files, study)


def test_retrieve_refuses_a_study_with_more_files_than_allowed_and_leaves_nothing(
    orthanc: OrthancServer, study: UploadedStudy, tmp_path: Path
) -> None:
    with pytest.raises(RetrieveLimitExceeded, match="max_files=3"):
        retrieve_study(orthanc.dicomweb_url, study.study_uid, tmp_path / "pulled", max_bytes=10_000_000, max_files=3)
    assert list((tmp_path / "pulled").iterdir()) == []


def test_retrieve_refuses_a_study_larger_than_allowed_and_leaves_nothing(
    orthanc: OrthancServer, study: UploadedStudy, tmp_path: Path
) -> None:
    one_file = next(iter(study.originals.values())).stat().st_size
    with pytest.raises(RetrieveLimitExceeded, match="max_bytes"):
        retrieve_study(
            orthanc.dicomweb_url, study.study_uid, tmp_path / "pulled", max_bytes=3 * one_file, max_files=100
        )
    assert list((tmp_path / "pulled").iterdir()) == []


def test_retrieving_an_unknown_study_reports_the_pacs_status(orthanc: OrthancServer, tmp_path: Path) -> None:
    with pytest.raises(PacsHttpError, match="404") as raised:
        retrieve_study(orthanc.dicomweb_url, "1.2.3.4.5", tmp_path / "pulled", max_bytes=1_000_000, max_files=10)
    assert raised.value.status_code == 404


def test_an_unreachable_pacs_is_a_clear_error(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/dicom-web"
    with pytest.raises(PacsUnreachable, match="unreachable"):
        search_studies(nowhere, StudyQuery(patient_id="X"))
    with pytest.raises(PacsUnreachable, match=r"127\.0\.0\.1"):
        retrieve_study(nowhere, "1.2.3", tmp_path / "pulled", max_bytes=1_000, max_files=1)


def test_orthanc_pushes_a_study_to_the_scp_which_hands_it_over_whole(
    orthanc: OrthancServer, study: UploadedStudy, tmp_path: Path
) -> None:
    received: queue.Queue[tuple[list[Path], str]] = queue.Queue()
    config = ScpConfig(
        ae_title="TRINITY",
        host="127.0.0.1",
        port=0,
        spool_dir=tmp_path / "spool",
        allowed_calling_aets=frozenset({orthanc.aet}),
    )
    scp = StoreSCP(config, lambda files, calling_ae: received.put((files, calling_ae)))
    scp.start()
    try:
        orthanc.set_modality("trinity", "TRINITY", "127.0.0.1", scp.port)
        response = orthanc.store_to_modality("trinity", [study.orthanc_id])
        assert response.status_code == 200, response.text
        files, calling_ae = received.get(timeout=30)  # handed over when Orthanc releases the association
    finally:
        scp.stop()
    assert calling_ae == orthanc.aet
    assert all(f.parent.parent == tmp_path / "spool" for f in files)
    assert_same_instances(files, study)
