"""DICOM header pieces shared by the phantom writers: SOP classes, the fake PHI and a base dataset."""

from __future__ import annotations

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
PRIVATE_CREATOR = "TRINITY PHANTOM"
FAKE_PATIENT: dict[str, str] = {
    "PatientName": "Doe^Jane^Q",
    "PatientID": "PHANTOM-4711",
    "PatientBirthDate": "19700402",
    "PatientSex": "F",
    "InstitutionName": "St. Example Hospital",
    "ReferringPhysicianName": "House^Gregory",
    "AccessionNumber": "ACC-0042",
    "StudyDate": "20240115",
    "StudyTime": "101500",
    "PrivateNote": "jane.doe@example.org lives at 1 Secret Lane",
}


def base_dataset(sop_class: str, patient: dict[str, str], study_uid: str, series_uid: str) -> Dataset:
    """Patient, study and series modules with fake PHI and a private tag; explicit VR little endian."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    sop_uid = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = UID(sop_class)
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "CT"
    for key in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "InstitutionName"):
        setattr(ds, key, patient[key])
    for key in ("ReferringPhysicianName", "AccessionNumber", "StudyDate", "StudyTime"):
        setattr(ds, key, patient[key])
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = generate_uid()
    ds.StudyID = "1"
    ds.Manufacturer = "Trinity phantom"
    ds.PatientPosition = "HFS"
    ds.private_block(0x0009, PRIVATE_CREATOR, create=True).add_new(0x01, "LO", patient["PrivateNote"])
    return ds
