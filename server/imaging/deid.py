"""De-identification of one DICOM instance: PS3.15 Annex E, Basic Application Level Confidentiality Profile.

Pure: pydicom and the standard library. The attribute actions come from `deid_profile.BASIC_PROFILE`
(Table E.1-1); on top of the table, because the table lags the data dictionary and vendors put
identity in odd places:

- every private attribute (odd group) is removed, at any depth, with curve and overlay groups;
- every UID value outside `1.2.840.10008.` is replaced, at any depth, except class/syntax UIDs, by
  `remap_uid(uid, site_secret)`: the same UID always maps to the same new one for a site, so two
  uploads of one study, and references between instances (RTSTRUCT → CT), stay consistent;
- a person name (PN) or date/time (DA, DT, TM) the table does not name is emptied;
- instances that may carry burned-in text (flagged, secondary captures, screen saves, OT/SC/DOC) are
  refused unless the owning site accepts the risk (`DeidOptions.allow_burned_in_risk`).

Why not a library: on one test instance, dicognito 0.19 kept every private tag, the device serial
number and a name inside Study Description, and set no Patient Identity Removed; deid 0.4.13's default
recipe deleted the SOP, Study and Series Instance UIDs (breaking every reference) and kept the
institution, station and device identity.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import io
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from server.imaging.deid_profile import BASIC_PROFILE, CLASS_UID_TAGS, PATIENT_CHARACTERISTICS, Action

WELL_KNOWN_UID_ROOT = "1.2.840.10008."
MIN_SECRET_BYTES = 16
MAX_LABEL_CHARS = 64  # Patient ID is LO

_SECONDARY_CAPTURE_CLASSES = frozenset(
    "1.2.840.10008.5.1.4.1.1." + suffix for suffix in ("7", "7.1", "7.2", "7.3", "7.4")
)
_RISKY_MODALITIES = frozenset({"OT", "SC", "DOC"})
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"

_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR"})
_DATE_TIME_VRS = frozenset({"DA", "DT", "TM"})
_DUMMY_BY_VR: dict[str, object] = {
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "IS": "0",
    "DS": "0",
    "AS": "000D",
    **{vr: 0 for vr in ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV")},
    **{vr: "DEIDENTIFIED" for vr in _TEXT_VRS},
}

# CID 7050 codes: the profile and the options that can apply here.
CODE_BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
CODE_RETAIN_PATIENT_CHARACTERISTICS = ("113108", "Retain Patient Characteristics Option")


class RefusalCode(StrEnum):
    BURNED_IN_ANNOTATION = "burned_in_annotation"
    SECONDARY_CAPTURE = "secondary_capture"
    DERIVED_SECONDARY = "derived_secondary"
    SCREEN_SAVE = "screen_save"
    RISKY_MODALITY = "risky_modality"
    DICOMDIR = "dicomdir"
    NOT_DICOM = "not_dicom"
    INVALID_DATASET = "invalid_dataset"


@dataclass(frozen=True)
class Refusal:
    code: RefusalCode
    message: str


@dataclass(frozen=True)
class UidChange:
    original: str
    new: str


@dataclass(frozen=True)
class DeidOptions:
    allow_burned_in_risk: bool = False  # the owning site's override, for internal use only
    retain_patient_characteristics: bool = False  # age, sex, size, weight... (113108)
    max_sequence_depth: int = 16


@dataclass(frozen=True)
class DeidResult:
    """A de-identified dataset, or a refusal. `uid_map` (original → new, every replaced UID) and the
    study/series/instance changes are the link back to the patient: only the owning site keeps them."""

    dataset: Dataset | None = None
    refusal: Refusal | None = None
    uid_map: Mapping[str, str] = field(default_factory=dict)
    study: UidChange | None = None
    series: UidChange | None = None
    instance: UidChange | None = None
    warnings: tuple[str, ...] = ()
    data: bytes | None = None  # the encoded file, from `deidentify_bytes`

    @property
    def ok(self) -> bool:
        return self.refusal is None


class _TooDeep(Exception):
    pass


def derive_site_secret(install_secret: bytes, site_id: str) -> bytes:
    """One install key gives each site its own UID space: sites cannot link each other's studies."""
    return hmac.new(install_secret, b"trinity-deid-site:" + site_id.encode(), hashlib.sha256).hexdigest().encode()


def remap_uid(uid: str, site_secret: bytes) -> str:
    """`2.25.<n>` where n is a UUID (version 8, RFC 9562) built from HMAC-SHA256(site_secret, uid).

    Deterministic per site, at most 44 characters, and irreversible without the secret.
    """
    digest = hmac.new(site_secret, b"uid:" + uid.encode(), hashlib.sha256).digest()
    n = int.from_bytes(digest[:16], "big")
    n = (n & ~(0xF << 76)) | (0x8 << 76)  # version 8
    n = (n & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return f"2.25.{n}"


def burned_in_risk(ds: Dataset) -> Refusal | None:
    """Why this instance may show identity in its pixels, or None. The flag alone is often wrong."""
    if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
        return Refusal(RefusalCode.BURNED_IN_ANNOTATION, "Burned In Annotation is YES: the pixels show text")
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class in _SECONDARY_CAPTURE_CLASSES:
        return Refusal(
            RefusalCode.SECONDARY_CAPTURE, f"secondary capture ({sop_class}): screenshots often show patient text"
        )
    image_type = ds.get("ImageType", [])
    values = [str(v).strip().upper() for v in (image_type if isinstance(image_type, MultiValue) else [image_type])]
    if "SCREEN SAVE" in values:
        return Refusal(RefusalCode.SCREEN_SAVE, "Image Type contains SCREEN SAVE: a screenshot may show patient text")
    if values[:2] == ["DERIVED", "SECONDARY"]:
        return Refusal(
            RefusalCode.DERIVED_SECONDARY,
            "Image Type is DERIVED\\SECONDARY: a derived image may carry burned-in annotation",
        )
    modality = str(ds.get("Modality", "")).strip().upper()
    if modality in _RISKY_MODALITIES:
        return Refusal(RefusalCode.RISKY_MODALITY, f"modality {modality} often carries burned-in or document text")
    return None


def deidentify(ds: Dataset, *, site_secret: bytes, label: str, options: DeidOptions | None = None) -> DeidResult:
    """De-identify a copy of `ds` (the input is left as it was)."""
    _check_inputs(site_secret, label)
    return _deidentify_in_place(copy.deepcopy(ds), site_secret, label, options or DeidOptions())


def deidentify_bytes(data: bytes, *, site_secret: bytes, label: str, options: DeidOptions | None = None) -> DeidResult:
    """De-identify one DICOM file's bytes; `result.data` is a complete file (preamble, file meta, the
    original transfer syntax, pixel data byte for byte). Never raises for bad input: refuses instead."""
    _check_inputs(site_secret, label)
    try:
        ds = _read(data)
    except Exception as exc:  # any parse failure of untrusted bytes is a refusal, not a crash
        return DeidResult(refusal=Refusal(RefusalCode.NOT_DICOM, f"not a readable DICOM file: {_short(exc)}"))
    try:
        result = _deidentify_in_place(ds, site_secret, label, options or DeidOptions())
        if result.dataset is None:
            return result
        return replace(result, data=encode(result.dataset))
    except Exception as exc:  # malformed values surface only when touched or written
        return DeidResult(refusal=Refusal(RefusalCode.INVALID_DATASET, f"cannot de-identify: {_short(exc)}"))


def encode(ds: Dataset) -> bytes:
    """A DICOM file (preamble, file meta) in the transfer syntax named by `ds.file_meta`."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _check_inputs(site_secret: bytes, label: str) -> None:
    if len(site_secret) < MIN_SECRET_BYTES:
        raise ValueError(f"site secret must be at least {MIN_SECRET_BYTES} bytes: a short key lets UIDs be guessed")
    if not label.strip() or len(label) > MAX_LABEL_CHARS:
        raise ValueError(f"label must be 1 to {MAX_LABEL_CHARS} characters")
    if not all(32 <= ord(c) < 127 and c != "\\" for c in label):
        raise ValueError("label must be printable ASCII without backslash (it becomes Patient ID and Name)")


def _read(data: bytes) -> Dataset:
    try:
        return pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError:
        # Files without the preamble and DICM prefix are still DICOM; an instance needs UIDs below.
        return pydicom.dcmread(io.BytesIO(data), force=True)


def _short(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _deidentify_in_place(ds: Dataset, site_secret: bytes, label: str, options: DeidOptions) -> DeidResult:
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    if str(meta.get("MediaStorageSOPClassUID", "")) == _DICOMDIR_CLASS:
        return DeidResult(refusal=Refusal(RefusalCode.DICOMDIR, "a DICOMDIR is an index of other files, not an image"))
    sop_class, sop_instance = str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", ""))
    if not sop_class or not sop_instance:
        return DeidResult(refusal=Refusal(RefusalCode.NOT_DICOM, "no SOP Class UID or SOP Instance UID"))
    warnings: list[str] = []
    risk = burned_in_risk(ds)
    if risk is not None:
        if not options.allow_burned_in_risk:
            return DeidResult(refusal=risk)
        warnings.append(f"burned-in risk accepted by the owning site: {risk.message}")
    originals = {k: str(ds.get(k, "")) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")}
    transfer_syntax = _transfer_syntax(ds, meta)

    uid_map: dict[str, str] = {}
    try:
        _clean(ds, site_secret, options, uid_map, depth=0)
    except _TooDeep:
        return DeidResult(
            refusal=Refusal(
                RefusalCode.INVALID_DATASET, f"sequences nested deeper than {options.max_sequence_depth} levels"
            )
        )
    _mark(ds, label, options)
    ds.file_meta = _new_file_meta(ds, transfer_syntax)
    ds.preamble = b"\0" * 128  # a preamble may hold a TIFF header or anything else

    def change(keyword: str) -> UidChange | None:
        original = originals[keyword]
        return UidChange(original, uid_map[original]) if original in uid_map else None

    return DeidResult(
        dataset=ds,
        uid_map=uid_map,
        study=change("StudyInstanceUID"),
        series=change("SeriesInstanceUID"),
        instance=change("SOPInstanceUID"),
        warnings=tuple(warnings),
    )


def _transfer_syntax(ds: Dataset, meta: FileMetaDataset) -> str:
    if "TransferSyntaxUID" in meta:
        return str(meta.TransferSyntaxUID)
    implicit, little = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little is not False else ExplicitVRBigEndian


def _removed_by_rule(tag: int) -> bool:
    group, element = tag >> 16, tag & 0xFFFF
    if group % 2 == 1 or group == 0x0000:
        return True  # private attributes and command fields
    if element == 0x0000 and group != 0x0002:
        return True  # group lengths go stale once anything changes
    # Curves (50xx) and overlays (60xx): the table removes their data, and the rest is then invalid.
    return (group & 0xFF00) in (0x5000, 0x6000) and (group & 0x00FF) <= 0x1E


def _clean(ds: Dataset, secret: bytes, options: DeidOptions, uid_map: dict[str, str], depth: int) -> None:
    if depth > options.max_sequence_depth:
        raise _TooDeep
    for tag in list(ds.keys()):
        if _removed_by_rule(int(tag)):
            del ds[tag]
            continue
        elem = ds[tag]
        action = BASIC_PROFILE.get(int(tag))
        if options.retain_patient_characteristics and int(tag) in PATIENT_CHARACTERISTICS:
            action = Action.KEEP
        if action is None:
            action = _default_action(elem)
        if action is Action.REMOVE:
            del ds[tag]
        elif action is Action.EMPTY:
            elem.value = [] if elem.VR == "SQ" else ("" if elem.VR in _TEXT_VRS | _DATE_TIME_VRS else None)
        elif action is Action.DUMMY:
            # A dummy sequence would need dummy items: an empty one identifies no one.
            elem.value = [] if elem.VR == "SQ" else _DUMMY_BY_VR.get(elem.VR)
        elif action is Action.REPLACE_UID:
            _replace_uids(elem, secret, uid_map)
        elif elem.VR == "SQ":
            for item in elem.value or []:
                _clean(item, secret, options, uid_map, depth + 1)


def _default_action(elem: DataElement) -> Action:
    if elem.VR == "PN" or elem.VR in _DATE_TIME_VRS:
        return Action.EMPTY  # the table lags the dictionary; names and dates are never safe to keep
    if elem.VR == "UI" and elem.tag not in CLASS_UID_TAGS:
        return Action.REPLACE_UID
    return Action.KEEP


def _replace_uids(elem: DataElement, secret: bytes, uid_map: dict[str, str]) -> None:
    def one(value: object) -> object:
        uid = str(value or "").strip()
        if not uid or uid.startswith(WELL_KNOWN_UID_ROOT):
            return value
        if uid not in uid_map:
            uid_map[uid] = remap_uid(uid, secret)
        return uid_map[uid]

    if isinstance(elem.value, MultiValue | list):
        elem.value = [one(v) for v in elem.value]
    else:
        elem.value = one(elem.value)


def _mark(ds: Dataset, label: str, options: DeidOptions) -> None:
    """The case label instead of the patient, and the record of what was done (PS3.15 E.1.1)."""
    ds.PatientName = label
    ds.PatientID = label
    ds.PatientIdentityRemoved = "YES"
    ds.LongitudinalTemporalInformationModified = "REMOVED"
    codes = [CODE_BASIC_PROFILE]
    methods = ["PS3.15 E.1 Basic Application Confidentiality Profile", "UIDs replaced by a per-site keyed hash"]
    if options.retain_patient_characteristics:
        codes.append(CODE_RETAIN_PATIENT_CHARACTERISTICS)
        methods.append(CODE_RETAIN_PATIENT_CHARACTERISTICS[1])
    if options.allow_burned_in_risk:
        methods.append("Pixel data not checked for burned-in text")
    ds.DeidentificationMethod = methods
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)


def _new_file_meta(ds: Dataset, transfer_syntax: str) -> FileMetaDataset:
    """Only what identifies the object and its encoding: source AE titles and private meta go."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "TRINITY_DEID"
    return meta
