"""Imaging records in SQL: de-identified studies, series and instances of a case, the owning site's
link back to the original UIDs, and the per-file report of each ingest."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index
from sqlmodel import Field, SQLModel

from server.core.db import now_ms


class ImagingStudy(SQLModel, table=True):
    __tablename__ = "imaging_studies"
    __table_args__ = (Index("ux_imaging_study_case_uid", "case_id", "study_uid", unique=True),)
    id: str = Field(primary_key=True, max_length=64)
    case_id: str = Field(foreign_key="cases.id", index=True, max_length=64)
    site_id: str = Field(max_length=64)
    study_uid: str = Field(max_length=64)  # de-identified
    description: str = Field(default="", max_length=200)
    modalities: str = Field(default="", max_length=64)
    source: str = Field(default="upload", max_length=16)  # upload | stow | scp | pacs
    created_at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger)


class ImagingSeries(SQLModel, table=True):
    __tablename__ = "imaging_series"
    __table_args__ = (Index("ux_imaging_series_case_uid", "case_id", "series_uid", unique=True),)
    id: str = Field(primary_key=True, max_length=64)
    study_id: str = Field(foreign_key="imaging_studies.id", index=True, max_length=64)
    case_id: str = Field(foreign_key="cases.id", index=True, max_length=64)
    series_uid: str = Field(max_length=64)
    modality: str = Field(default="", max_length=16)
    description: str = Field(default="", max_length=200)
    number: int | None = None
    created_at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger)


class ImagingInstance(SQLModel, table=True):
    __tablename__ = "imaging_instances"
    __table_args__ = (Index("ux_imaging_instance_case_uid", "case_id", "sop_uid", unique=True),)
    id: str = Field(primary_key=True, max_length=64)
    series_id: str = Field(foreign_key="imaging_series.id", index=True, max_length=64)
    study_id: str = Field(max_length=64)
    case_id: str = Field(foreign_key="cases.id", index=True, max_length=64)
    sop_uid: str = Field(max_length=64)
    sop_class_uid: str = Field(default="", max_length=64)
    transfer_syntax_uid: str = Field(default="", max_length=64)
    instance_number: int | None = None
    frames: int = 1
    blob_sha256: str = Field(max_length=64)
    size_bytes: int = Field(default=0, sa_type=BigInteger)
    # DICOM JSON of the de-identified header without bulk data: QIDO-RS and WADO-RS metadata.
    header: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger)


class UidLink(SQLModel, table=True):
    """Original → de-identified UID, kept for the owning site only (never served, never exported)."""

    __tablename__ = "imaging_uid_links"
    case_id: str = Field(foreign_key="cases.id", primary_key=True, max_length=64)
    new_uid: str = Field(primary_key=True, max_length=64)
    original_uid: str = Field(max_length=64)
    level: str = Field(max_length=16)  # study | series | instance


class IngestReport(SQLModel, table=True):
    __tablename__ = "imaging_ingest_reports"
    id: str = Field(primary_key=True, max_length=64)
    case_id: str = Field(foreign_key="cases.id", index=True, max_length=64)
    job_id: str | None = Field(default=None, max_length=64)
    source: str = Field(max_length=16)
    created_by: str = Field(max_length=64)
    accepted: int = 0
    rejected: int = 0
    # [{"name", "status": accepted|rejected|duplicate, "code", "message", "sop_uid"?}]
    files: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger)
