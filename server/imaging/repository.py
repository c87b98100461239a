"""SQL access for imaging records (sessions passed in): what an ingest stores, what QIDO/WADO and the
REST API read. Rows hold only de-identified data; `UidLink` rows are written for the owning site."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from server.core.auth import new_id
from server.core.errors import NotFound
from server.imaging.models import ImagingInstance, ImagingSeries, ImagingStudy, UidLink


@dataclass
class NewInstance:
    """One de-identified file ready to be recorded (its bytes already in the blob store)."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    blob_sha256: str
    size_bytes: int
    header: dict[str, Any]
    study_description: str = ""
    series_description: str = ""
    modality: str = ""
    series_number: int | None = None
    instance_number: int | None = None
    frames: int = 1
    original_uids: dict[str, str] = field(default_factory=dict)  # new uid -> original uid, for UidLink


def _study(db: Session, case_id: str, site_id: str, item: NewInstance, source: str) -> ImagingStudy:
    row = db.exec(
        select(ImagingStudy).where(ImagingStudy.case_id == case_id, ImagingStudy.study_uid == item.study_uid)
    ).first()
    if row is None:
        row = ImagingStudy(
            id=new_id(),
            case_id=case_id,
            site_id=site_id,
            study_uid=item.study_uid,
            description=item.study_description[:200],
            modalities=item.modality[:64],
            source=source,
        )
        db.add(row)
        db.flush()
    elif item.modality and item.modality not in row.modalities.split("\\"):
        row.modalities = "\\".join(filter(None, [*row.modalities.split("\\"), item.modality]))[:64]
    return row


def _series(db: Session, case_id: str, study: ImagingStudy, item: NewInstance) -> ImagingSeries:
    row = db.exec(
        select(ImagingSeries).where(ImagingSeries.case_id == case_id, ImagingSeries.series_uid == item.series_uid)
    ).first()
    if row is None:
        row = ImagingSeries(
            id=new_id(),
            study_id=study.id,
            case_id=case_id,
            series_uid=item.series_uid,
            modality=item.modality[:16],
            description=item.series_description[:200],
            number=item.series_number,
        )
        db.add(row)
        db.flush()
    return row


def record_instance(db: Session, *, case_id: str, site_id: str, item: NewInstance, source: str) -> bool:
    """Stores one instance; False when the case already has this SOP instance (a re-sent study)."""
    exists = db.exec(
        select(ImagingInstance.id).where(ImagingInstance.case_id == case_id, ImagingInstance.sop_uid == item.sop_uid)
    ).first()
    if exists is not None:
        return False
    study = _study(db, case_id, site_id, item, source)
    series = _series(db, case_id, study, item)
    db.add(
        ImagingInstance(
            id=new_id(),
            series_id=series.id,
            study_id=study.id,
            case_id=case_id,
            sop_uid=item.sop_uid,
            sop_class_uid=item.sop_class_uid,
            transfer_syntax_uid=item.transfer_syntax_uid,
            instance_number=item.instance_number,
            frames=item.frames,
            blob_sha256=item.blob_sha256,
            size_bytes=item.size_bytes,
            header=item.header,
        )
    )
    for new_uid, original in item.original_uids.items():
        if db.get(UidLink, (case_id, new_uid)) is None:
            level = "study" if new_uid == item.study_uid else "series" if new_uid == item.series_uid else "instance"
            db.add(UidLink(case_id=case_id, new_uid=new_uid, original_uid=original, level=level))
    try:
        db.commit()
    except IntegrityError:  # the same instance arrived at the same moment by another path
        db.rollback()
        return False
    return True


def studies(db: Session, case_id: str, study_uid: str | None = None) -> list[dict[str, Any]]:
    query = select(ImagingStudy).where(ImagingStudy.case_id == case_id)
    if study_uid:
        query = query.where(ImagingStudy.study_uid == study_uid)
    out = []
    for study in db.exec(query.order_by(col(ImagingStudy.created_at_ms))).all():
        series_count = db.exec(select(func.count()).where(ImagingSeries.study_id == study.id)).one()
        instance_count = db.exec(select(func.count()).where(ImagingInstance.study_id == study.id)).one()
        out.append({"study": study, "series": series_count, "instances": instance_count})
    return out


def series_of(db: Session, case_id: str, study_uid: str | None = None) -> list[dict[str, Any]]:
    query = select(ImagingSeries, ImagingStudy).join(ImagingStudy, col(ImagingStudy.id) == col(ImagingSeries.study_id))
    query = query.where(ImagingSeries.case_id == case_id)
    if study_uid:
        query = query.where(ImagingStudy.study_uid == study_uid)
    out = []
    for series, study in db.exec(query.order_by(col(ImagingSeries.created_at_ms))).all():
        count = db.exec(select(func.count()).where(ImagingInstance.series_id == series.id)).one()
        out.append({"series": series, "study": study, "instances": count})
    return out


def volume_lineage(series_id: str) -> str:
    """The artifact lineage holding a series' volume (NRRD, HU, LPS geometry)."""
    return f"volume-{series_id}"


def series_by_uid(case_id: str, series_uid: str):  # type: ignore[no-untyped-def]
    return select(ImagingSeries).where(ImagingSeries.case_id == case_id, ImagingSeries.series_uid == series_uid)


def get_series(db: Session, case_id: str, series_id: str) -> ImagingSeries:
    row = db.get(ImagingSeries, series_id)
    if row is None or row.case_id != case_id:
        raise NotFound("no such series in this case")
    return row


def instances_of(
    db: Session,
    case_id: str,
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> list[ImagingInstance]:
    query = select(ImagingInstance).where(ImagingInstance.case_id == case_id)
    if study_uid:
        study = db.exec(
            select(ImagingStudy.id).where(ImagingStudy.case_id == case_id, ImagingStudy.study_uid == study_uid)
        ).first()
        query = query.where(ImagingInstance.study_id == (study or ""))
    if series_uid:
        series = db.exec(
            select(ImagingSeries.id).where(ImagingSeries.case_id == case_id, ImagingSeries.series_uid == series_uid)
        ).first()
        query = query.where(ImagingInstance.series_id == (series or ""))
    if sop_uid:
        query = query.where(ImagingInstance.sop_uid == sop_uid)
    return list(db.exec(query.order_by(col(ImagingInstance.instance_number), col(ImagingInstance.sop_uid))).all())
