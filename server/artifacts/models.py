"""Artifact versions. A lineage (one model in the room, e.g. "mandible") has versions 1, 2, …; each
version is immutable, its files are blobs, and its provenance says what it was made from and how."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index
from sqlmodel import Field, SQLModel

from server.core.db import now_ms


class Artifact(SQLModel, table=True):
    __tablename__ = "artifacts"
    __table_args__ = (Index("ux_artifact_lineage_version", "lineage_id", "version", unique=True),)
    id: str = Field(primary_key=True, max_length=64)
    case_id: str = Field(foreign_key="cases.id", index=True, max_length=64)
    site_id: str = Field(max_length=64)
    room_id: str | None = Field(default=None, max_length=64)
    lineage_id: str = Field(index=True, max_length=64)
    version: int = 1
    kind: str = Field(max_length=32)  # volume | mask | mesh | guide | implant
    name: str = Field(max_length=200)
    # {"glb": {"sha256", "size"}, "stl": …, "3mf": …, "nrrd": …}
    files: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # {"operation", "inputs": [{"artifact_id"|"series_uid", "sha256"}], "parameters", "libraries", "user",
    #  "room_id", "job_id", "at_ms"}
    provenance: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_by: str = Field(max_length=64)
    created_at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger)
