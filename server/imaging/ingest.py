"""Ingest, file by file: unpack archives safely, validate, de-identify, and hand each good file on.

PURE orchestration of archive.py, dicom_files.py and deid.py: the caller (the `imaging.ingest` job, or
`trinity deid`) supplies `accept`, which stores a de-identified file. Every input gets one line in the
report (accepted, duplicate or rejected with a code and a reason); a bad file never stops the others.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from server.imaging.archive import ArchiveLimits, ArchiveProblem, ArchiveRejected, iter_zip_members
from server.imaging.deid import DeidOptions, DeidResult, deidentify_bytes
from server.imaging.dicom_files import FileProblem, Limits, ProblemCode, read_dicom

# Stored for viewing, though never part of a volume.
STORABLE_PROBLEMS = frozenset({ProblemCode.LOCALIZER})
HEADER_BULK_BYTES = 1024  # header attributes longer than this are left out of the metadata JSON


@dataclass
class Outcome:
    name: str
    status: str  # accepted | duplicate | rejected
    code: str = ""
    message: str = ""
    sop_uid: str = ""  # de-identified

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v != ""}


@dataclass
class Accepted:
    """One de-identified file, ready for the blob store and the instance table."""

    name: str
    data: bytes
    dataset: Dataset  # de-identified
    header: dict[str, Any]  # DICOM JSON without bulk data (QIDO/WADO metadata)
    original_uids: dict[str, str]  # new -> original, for the owning site's link table


@dataclass
class IngestSettings:
    site_secret: bytes
    label: str
    limits: Limits = field(default_factory=Limits)
    archive_limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    deid: DeidOptions = field(default_factory=DeidOptions)


def iter_inputs(paths: list[tuple[str, Path]], limits: ArchiveLimits) -> Iterator[tuple[str, bytes] | Outcome]:
    """(display name, bytes) per file, zip archives unpacked; unsafe entries and archives become outcomes."""
    for name, path in paths:
        if zipfile.is_zipfile(path):
            try:
                for item in iter_zip_members(path, limits, temp_dir=path.parent):
                    if isinstance(item, ArchiveProblem):
                        yield Outcome(f"{name}:{item.name}", "rejected", str(item.code), item.message)
                    else:
                        yield f"{name}:{item.name}", item.read_bytes()
            except ArchiveRejected as exc:
                yield Outcome(name, "rejected", str(exc.problem.code), exc.problem.message)
        else:
            yield name, path.read_bytes()


def header_json(ds: Dataset) -> dict[str, Any]:
    """The dataset as DICOM JSON, bulk data (pixels, long binary values) left out."""
    slim = Dataset()
    for element in ds:
        if element.tag.group == 0x7FE0 or element.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
            continue
        slim.add(element)
    return slim.to_json_dict(bulk_data_threshold=HEADER_BULK_BYTES, bulk_data_element_handler=lambda _el: "")


def process_file(name: str, data: bytes, settings: IngestSettings) -> Accepted | Outcome:
    checked = read_dicom(data, name, limits=settings.limits)
    if isinstance(checked, FileProblem) and checked.code not in STORABLE_PROBLEMS:
        return Outcome(name, "rejected", str(checked.code), checked.reason)
    result: DeidResult = deidentify_bytes(
        data, site_secret=settings.site_secret, label=settings.label, options=settings.deid
    )
    if not result.ok or result.data is None or result.dataset is None:
        refusal = result.refusal
        return Outcome(
            name,
            "rejected",
            str(refusal.code) if refusal else "deid_failed",
            refusal.message if refusal else "de-identification failed",
        )
    return Accepted(
        name,
        result.data,
        result.dataset,
        header_json(result.dataset),
        {new: original for original, new in result.uid_map.items()},
    )


def ingest(
    inputs: Iterator[tuple[str, bytes] | Outcome],
    settings: IngestSettings,
    accept: Callable[[Accepted], bool],
    progress: Callable[[int], None] | None = None,
) -> list[Outcome]:
    """`accept` stores a file and returns False when the case already had it (a duplicate)."""
    outcomes: list[Outcome] = []
    seen: dict[str, str] = {}
    for index, item in enumerate(inputs):
        if progress:
            progress(index)
        if isinstance(item, Outcome):
            outcomes.append(item)
            continue
        name, data = item
        try:
            result = process_file(name, data, settings)
        except RecursionError:
            result = Outcome(name, "rejected", str(ProblemCode.NESTED_TOO_DEEP), "sequences nested too deeply")
        except Exception as exc:  # a decoder's surprise on a hostile file: report it, go on with the rest
            result = Outcome(name, "rejected", "unreadable", f"could not be read: {type(exc).__name__}: {exc}"[:300])
        if isinstance(result, Outcome):
            outcomes.append(result)
            continue
        sop = str(result.dataset.SOPInstanceUID)
        if sop in seen:
            outcomes.append(
                Outcome(
                    name,
                    "rejected",
                    str(ProblemCode.DUPLICATE_SOP_INSTANCE),
                    f"same SOP Instance UID as {seen[sop]} in this upload",
                    sop,
                )
            )
            continue
        seen[sop] = name
        stored = accept(result)
        outcomes.append(
            Outcome(
                name,
                "accepted" if stored else "duplicate",
                "" if stored else "already_in_case",
                "" if stored else "this instance is already in the case",
                sop,
            )
        )
    return outcomes
