"""De-identification (PS3.15 Annex E basic profile): the output bytes carry no identity, UIDs are
remapped consistently per site at every depth, and risky instances are refused."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from server.imaging.deid import (
    DeidOptions,
    RefusalCode,
    deidentify,
    deidentify_bytes,
    derive_site_secret,
    remap_uid,
)
from server.imaging.deid_profile import BASIC_PROFILE, Action
from tests.support.phantoms import FAKE_PATIENT, deeply_nested_bytes

SECRET = b"site-a-secret-0123456789abcdef"
OTHER_SECRET = b"site-b-secret-0123456789abcdef"
CT = "1.2.840.10008.5.1.4.1.1.2"
RTSTRUCT = "1.2.840.10008.5.1.4.1.1.481.3"
ROOT = "1.2.826.0.1.3680043.9.7777."  # an invented site root for the original UIDs
STUDY, SERIES, FRAME = ROOT + "1", ROOT + "1.2", ROOT + "1.3"
PIXELS = np.arange(16, dtype=np.uint16).reshape(4, 4).tobytes()

# Every identifying string written below; none may survive in the output bytes.
PHI = [
    "Smithers",
    "Waylon",
    "MRN-77123",
    "OTHER-ID-5511",
    "ISSUER-HOSP",
    "19610203",
    "20230115",
    "20230116",
    "235959",
    "ACC-98765",
    "St Elsewhere",
    "Harbor Lane",
    "CT-STATION-7",
    "SN-55501",
    "Jekyll",
    "Hyde",
    "Frankenstein",
    "RP-ID-4242",
    "SPS-ID-3131",
    "PRIVATE-SECRET",
    "NESTED-PRIVATE",
    "DEEP-NAME",
    "Radiology East",
    "555-0199",
    "OVERLAY-NOTE",
    "for Smithers",
    "PREAMBLE-PHI",
    "AE-SCANNER",
    "Moriarty",
    "20230117",
    "224433",
    ROOT,
]


def _person(name: str) -> Dataset:
    item = Dataset()
    item.PersonName = name
    return item


def ct_instance(sop_uid: str = ROOT + "1.2.100", transfer_syntax: str = ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = UID(CT), sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = STUDY, SERIES, FRAME
    ds.Modality, ds.ImageType = "CT", ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Smithers^Waylon", "MRN-77123", "19610203"
    ds.PatientSex, ds.PatientAge, ds.PatientWeight = "M", "062Y", 81.5
    ds.PatientAddress, ds.PatientTelephoneNumbers = "12 Harbor Lane", "555-0199"
    ds.IssuerOfPatientID = "ISSUER-HOSP"
    ds.StudyDate, ds.SeriesDate, ds.AcquisitionDate, ds.ContentDate = "20230115", "20230115", "20230116", "20230116"
    ds.StudyTime, ds.SeriesTime, ds.AcquisitionDateTime = "235959", "235959", "20230116235959"
    ds.AccessionNumber, ds.StudyID = "ACC-98765", "ACC-98765"
    ds.InstitutionName, ds.InstitutionAddress = "St Elsewhere", "1 Harbor Lane"
    ds.InstitutionalDepartmentName = "Radiology East"
    ds.StationName, ds.DeviceSerialNumber = "CT-STATION-7", "SN-55501"
    ds.ReferringPhysicianName, ds.PerformingPhysicianName, ds.OperatorsName = "Jekyll^Henry", "Hyde^Edward", "Hyde"
    ds.StudyDescription, ds.SeriesDescription = "CT head for Smithers", "for Smithers"
    ds.ImageComments = "Frankenstein consulted"
    other = Dataset()
    other.PatientID, other.IssuerOfPatientID = "OTHER-ID-5511", "ISSUER-HOSP"
    ds.OtherPatientIDsSequence = Sequence([other])
    request = Dataset()
    request.RequestedProcedureID, request.ScheduledProcedureStepID = "RP-ID-4242", "SPS-ID-3131"
    request.add_new(0x00091001, "LO", "NESTED-PRIVATE")
    ds.RequestAttributesSequence = Sequence([request])
    # A sequence the table does not name, holding identity the table does name (and one it does not).
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "T-A0100", "SRT", "Brain"
    code.add_new(0x00111001, "LO", "NESTED-PRIVATE")
    code.PatientName = "DEEP-NAME"
    code.ContentCreatorName = "Frankenstein"
    code.EvaluatorName = "Moriarty^James"  # names, dates and UIDs the table does not list are cleaned too
    ds.InstanceCreationDate, ds.ContrastBolusStartTime = "20230117", "224433"
    ds.SOPInstanceUIDOfConcatenationSource = ROOT + "1.2.99"
    ds.AnatomicRegionSequence = Sequence([code])
    ds.PersonIdentificationCodeSequence = Sequence([_person("Frankenstein")])
    ds.private_block(0x0009, "ACME 1.1", create=True).add_new(0x10, "LO", "PRIVATE-SECRET")
    ds.add_new(0x60004000, "LT", "OVERLAY-NOTE")
    ds.add_new(0x00080000, "UL", 1234)  # a stale group length
    ds.SynchronizationFrameOfReferenceUID = "1.2.840.10008.15.1.1"  # well-known UTC synchronisation
    ds.Rows = ds.Columns = 4
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = PIXELS
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = UID(CT), sop_uid
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.file_meta.SourceApplicationEntityTitle = "AE-SCANNER"
    ds.preamble = b"PREAMBLE-PHI".ljust(128, b"\0")
    return ds


def file_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def rtstruct_referencing(ct: Dataset) -> Dataset:
    """An RTSTRUCT-like instance: the CT's UIDs nested four sequences deep."""
    image = Dataset()
    image.ReferencedSOPClassUID, image.ReferencedSOPInstanceUID = ct.SOPClassUID, ct.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID, series.ContourImageSequence = ct.SeriesInstanceUID, Sequence([image])
    study = Dataset()
    study.ReferencedSOPClassUID, study.ReferencedSOPInstanceUID = "1.2.840.10008.3.1.2.3.1", ct.StudyInstanceUID
    study.RTReferencedSeriesSequence = Sequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID, frame.RTReferencedStudySequence = ct.FrameOfReferenceUID, Sequence([study])
    roi = Dataset()
    roi.ROINumber, roi.ReferencedFrameOfReferenceUID, roi.ROIName = 1, ct.FrameOfReferenceUID, "Mandible"
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = UID(RTSTRUCT), ROOT + "9.1", "RTSTRUCT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = ct.StudyInstanceUID, ROOT + "9"
    ds.PatientName, ds.PatientID = ct.PatientName, ct.PatientID
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    ds.StructureSetROISequence = Sequence([roi])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def test_no_original_phi_appears_anywhere_in_the_output_bytes() -> None:
    original = file_bytes(ct_instance())
    assert all(s.encode() in original for s in PHI)  # the test input really carries each string

    result = deidentify_bytes(original, site_secret=SECRET, label="CASE-0007")

    assert result.ok and result.data is not None
    leaked = [s for s in PHI if s.encode() in result.data]
    assert leaked == []
    out = pydicom.dcmread(io.BytesIO(result.data))
    assert not [e.tag for e in out.iterall() if e.tag.is_private]
    assert "AnatomicRegionSequence" in out and out.AnatomicRegionSequence[0].CodeMeaning == "Brain"


def test_the_viewer_shows_the_case_label_and_the_record_of_deidentification() -> None:
    out = deidentify(ct_instance(), site_secret=SECRET, label="CASE-0007").dataset

    assert out is not None
    assert (str(out.PatientName), out.PatientID, out.PatientIdentityRemoved) == ("CASE-0007", "CASE-0007", "YES")
    assert any("Basic Application Confidentiality Profile" in m for m in out.DeidentificationMethod)
    codes = [(c.CodeValue, c.CodingSchemeDesignator) for c in out.DeidentificationMethodCodeSequence]
    assert codes == [("113100", "DCM")]
    assert out.PatientSex == "" and "PatientAge" not in out and "PatientWeight" not in out


def test_retain_patient_characteristics_keeps_age_sex_weight_and_says_so() -> None:
    options = DeidOptions(retain_patient_characteristics=True)
    out = deidentify(ct_instance(), site_secret=SECRET, label="CASE-0007", options=options).dataset

    assert out is not None
    assert (out.PatientSex, out.PatientAge, float(out.PatientWeight)) == ("M", "062Y", 81.5)
    assert "113108" in [c.CodeValue for c in out.DeidentificationMethodCodeSequence]
    assert out.PatientBirthDate == ""


def test_two_uploads_of_one_study_map_to_the_same_new_uids() -> None:
    first = deidentify_bytes(file_bytes(ct_instance()), site_secret=SECRET, label="A")
    second = deidentify_bytes(file_bytes(ct_instance()), site_secret=SECRET, label="B")
    elsewhere = deidentify_bytes(file_bytes(ct_instance()), site_secret=OTHER_SECRET, label="A")

    assert first.study and first.series and first.instance
    assert (first.study, first.series, first.instance) == (second.study, second.series, second.instance)
    assert first.uid_map == second.uid_map
    assert first.study.original == STUDY and first.instance.original == ROOT + "1.2.100"
    assert elsewhere.uid_map.keys() == first.uid_map.keys()
    assert not set(elsewhere.uid_map.values()) & set(first.uid_map.values())


def test_sites_derived_from_one_install_key_get_different_uids() -> None:
    install = b"install-key-0123456789abcdef"
    a, b = derive_site_secret(install, "site-a"), derive_site_secret(install, "site-b")

    assert a != b and a == derive_site_secret(install, "site-a")
    assert remap_uid(STUDY, a) != remap_uid(STUDY, b)


def test_nested_rtstruct_references_point_at_the_remapped_ct() -> None:
    ct = ct_instance()
    new_ct = deidentify(ct, site_secret=SECRET, label="C").dataset
    new_rt = deidentify(rtstruct_referencing(ct), site_secret=SECRET, label="C").dataset

    assert new_ct is not None and new_rt is not None
    frame = new_rt.ReferencedFrameOfReferenceSequence[0]
    study = frame.RTReferencedStudySequence[0]
    series = study.RTReferencedSeriesSequence[0]
    image = series.ContourImageSequence[0]
    assert frame.FrameOfReferenceUID == new_ct.FrameOfReferenceUID != ct.FrameOfReferenceUID
    assert study.ReferencedSOPInstanceUID == new_ct.StudyInstanceUID == new_rt.StudyInstanceUID
    assert series.SeriesInstanceUID == new_ct.SeriesInstanceUID
    assert image.ReferencedSOPInstanceUID == new_ct.SOPInstanceUID
    assert new_rt.StructureSetROISequence[0].ReferencedFrameOfReferenceUID == new_ct.FrameOfReferenceUID
    # Class UIDs are not identity: they stay, or no viewer could read the object.
    assert image.ReferencedSOPClassUID == CT and study.ReferencedSOPClassUID == "1.2.840.10008.3.1.2.3.1"


def test_well_known_uids_are_left_alone() -> None:
    out = deidentify(ct_instance(), site_secret=SECRET, label="C").dataset

    assert out is not None
    assert out.SOPClassUID == CT and out.file_meta.MediaStorageSOPClassUID == CT
    assert out.SynchronizationFrameOfReferenceUID == "1.2.840.10008.15.1.1"


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian])
def test_file_meta_matches_the_dataset_and_the_transfer_syntax_is_kept(syntax: str) -> None:
    result = deidentify_bytes(file_bytes(ct_instance(transfer_syntax=syntax)), site_secret=SECRET, label="C")

    assert result.data is not None and result.instance is not None
    assert result.data[:128] == b"\0" * 128 and result.data[128:132] == b"DICM"
    out = pydicom.dcmread(io.BytesIO(result.data))
    assert out.file_meta.TransferSyntaxUID == syntax
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID == result.instance.new
    assert out.file_meta.MediaStorageSOPClassUID == out.SOPClassUID
    assert "SourceApplicationEntityTitle" not in out.file_meta
    assert out.PixelData == PIXELS


def test_the_input_dataset_is_not_modified() -> None:
    ds = ct_instance()
    deidentify(ds, site_secret=SECRET, label="C")

    assert ds.PatientName == "Smithers^Waylon" and ds.SOPInstanceUID == ROOT + "1.2.100"


def _with(**changes: object) -> Dataset:
    ds = ct_instance()
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    ("ds", "code"),
    [
        (_with(BurnedInAnnotation="YES"), RefusalCode.BURNED_IN_ANNOTATION),
        (_with(SOPClassUID=UID("1.2.840.10008.5.1.4.1.1.7")), RefusalCode.SECONDARY_CAPTURE),
        (_with(SOPClassUID=UID("1.2.840.10008.5.1.4.1.1.7.4")), RefusalCode.SECONDARY_CAPTURE),
        (_with(ImageType=["DERIVED", "SECONDARY", "REFORMATTED"]), RefusalCode.DERIVED_SECONDARY),
        (_with(ImageType=["ORIGINAL", "PRIMARY", "SCREEN SAVE"]), RefusalCode.SCREEN_SAVE),
        (_with(Modality="OT"), RefusalCode.RISKY_MODALITY),
        (_with(Modality="DOC"), RefusalCode.RISKY_MODALITY),
    ],
)
def test_instances_that_may_show_identity_in_pixels_are_refused(ds: Dataset, code: RefusalCode) -> None:
    refused = deidentify(ds, site_secret=SECRET, label="C")
    accepted = deidentify(ds, site_secret=SECRET, label="C", options=DeidOptions(allow_burned_in_risk=True))

    assert refused.refusal is not None and refused.refusal.code == code and refused.dataset is None
    assert refused.refusal.message
    assert accepted.ok and accepted.warnings and accepted.dataset is not None
    assert any("burned-in" in m for m in accepted.dataset.DeidentificationMethod)


def test_burned_in_no_on_a_ct_is_accepted() -> None:
    assert deidentify(_with(BurnedInAnnotation="NO"), site_secret=SECRET, label="C").ok


def _nested_references(depth: int) -> Dataset:
    ds = ct_instance()
    inner = Dataset()
    inner.ReferencedSOPInstanceUID = ROOT + "5"
    for _ in range(depth):
        outer = Dataset()
        outer.ReferencedFrameOfReferenceSequence = Sequence([inner])
        inner = outer
    ds.ReferencedFrameOfReferenceSequence = Sequence([inner])
    return ds


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", RefusalCode.NOT_DICOM),
        (b"plain text, not DICOM at all\n" * 20, RefusalCode.NOT_DICOM),
        (deeply_nested_bytes(3000), RefusalCode.NOT_DICOM),  # pydicom's reader recurses and gives up
        (file_bytes(_nested_references(40)), RefusalCode.INVALID_DATASET),
    ],
)
def test_hostile_or_foreign_bytes_are_refused_not_raised(data: bytes, code: RefusalCode) -> None:
    result = deidentify_bytes(data, site_secret=SECRET, label="C")

    assert result.refusal is not None and result.refusal.code == code


def test_a_deep_content_sequence_is_emptied_by_the_profile_not_walked() -> None:
    result = deidentify_bytes(deeply_nested_bytes(40, undefined_length=False), site_secret=SECRET, label="C")

    assert result.dataset is not None and list(result.dataset.ContentSequence) == []


def test_phantom_phi_is_removed() -> None:
    ds = ct_instance()
    for keyword in ("PatientName", "PatientID", "InstitutionName", "ReferringPhysicianName"):
        setattr(ds, keyword, FAKE_PATIENT[keyword])
    result = deidentify_bytes(file_bytes(ds), site_secret=SECRET, label="C")

    assert result.data is not None
    assert [v for k, v in FAKE_PATIENT.items() if k != "PatientSex" and v.encode() in result.data] == []


def test_a_short_secret_or_an_unsafe_label_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="secret"):
        deidentify(ct_instance(), site_secret=b"short", label="C")
    for label in ("", "a\\b", "x" * 65, "tab\there"):
        with pytest.raises(ValueError, match="label"):
            deidentify(ct_instance(), site_secret=SECRET, label=label)


def test_remapped_uids_are_valid_distinct_and_at_most_64_characters() -> None:
    rng = random.Random(7)
    originals = {f"1.{rng.randrange(10**12)}.{rng.randrange(10**30)}" for _ in range(2000)}
    mapped = {remap_uid(u, SECRET) for u in originals}

    assert len(mapped) == len(originals)
    assert all(UID(u).is_valid and len(u) <= 64 and u.startswith("2.25.") for u in mapped)


def test_the_profile_table_names_real_attributes_with_consistent_actions() -> None:
    assert len(BASIC_PROFILE) > 400
    assert all(keyword_for_tag(tag) for tag in BASIC_PROFILE)
    assert all(dictionary_VR(t) == "UI" for t, a in BASIC_PROFILE.items() if a is Action.REPLACE_UID)
    by_keyword = {keyword_for_tag(t): a for t, a in BASIC_PROFILE.items()}
    assert by_keyword["PatientName"] is Action.EMPTY and by_keyword["StudyInstanceUID"] is Action.REPLACE_UID
    assert by_keyword["OtherPatientIDsSequence"] is Action.REMOVE
    assert by_keyword["ReferencedImageSequence"] is Action.KEEP  # X/Z/U*: kept, its UIDs replaced


def _pydicom_test_files() -> list[Path]:
    return [Path(p) for p in get_testdata_files() if os.path.isfile(p)]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom's own test files hold odd values on purpose
def test_every_pydicom_test_file_is_deidentified_or_refused_with_a_reason() -> None:
    outcomes: dict[str, int] = {}
    for path in _pydicom_test_files():
        data = path.read_bytes()
        result = deidentify_bytes(data, site_secret=SECRET, label="CASE-1")
        if result.refusal is not None:
            assert result.refusal.code in RefusalCode and result.refusal.message, path.name
            outcomes[result.refusal.code] = outcomes.get(result.refusal.code, 0) + 1
            continue
        assert result.data is not None, path.name
        before = pydicom.dcmread(io.BytesIO(data), force=True)
        after = pydicom.dcmread(io.BytesIO(result.data))
        assert after.PatientIdentityRemoved == "YES", path.name
        assert not [e.tag for e in after.iterall() if e.tag.is_private], path.name
        assert after.get("PixelData") == before.get("PixelData"), path.name
        name = str(before.get("PatientName", ""))
        assert len(name) < 4 or name.encode() not in result.data, path.name
        outcomes["ok"] = outcomes.get("ok", 0) + 1
    assert outcomes.get("ok", 0) >= 50, outcomes
    assert outcomes.get(RefusalCode.SECONDARY_CAPTURE, 0) >= 1 and outcomes.get(RefusalCode.DICOMDIR, 0) >= 1
