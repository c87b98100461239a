"""Patient cases: a de-identified label for everyone, the real identity for the owning site only."""

from __future__ import annotations

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel

from server.core.db import now_ms


class Case(SQLModel, table=True):
    __tablename__ = "cases"
    id: str = Field(primary_key=True, max_length=64)
    site_id: str = Field(foreign_key="sites.id", index=True, max_length=64)
    label: str = Field(max_length=200)  # de-identified, e.g. "MAND-2026-014"
    description: str = Field(default="", max_length=2000)
    created_by: str = Field(foreign_key="users.id", max_length=64)
    created_at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger)


class CaseIdentity(SQLModel, table=True):
    """Never serialized into rooms, events or exports; read only by the owning site's users."""

    __tablename__ = "case_identities"
    case_id: str = Field(foreign_key="cases.id", primary_key=True, max_length=64)
    patient_name: str = Field(default="", max_length=200)
    patient_id: str = Field(default="", max_length=100)
    birth_date: str = Field(default="", max_length=20)
