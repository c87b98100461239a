"""Sites, users, sessions and API keys."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel

from server.core.db import now_ms


class UserRole(StrEnum):
    SURGEON = "surgeon"
    ENGINEER = "engineer"
    RADIOLOGIST = "radiologist"
    TECHNICIAN = "technician"
    OBSERVER = "observer"
    ADMIN = "admin"


class Site(SQLModel, table=True):
    __tablename__ = "sites"
    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    storage_quota_bytes: int | None = Field(default=None, sa_type=BigInteger)
    created_at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger)


class User(SQLModel, table=True):
    __tablename__ = "users"
    id: str = Field(primary_key=True, max_length=64)
    site_id: str = Field(foreign_key="sites.id", index=True, max_length=64)
    username: str = Field(unique=True, index=True, max_length=100)
    display_name: str = Field(max_length=200)
    email: str | None = Field(default=None, max_length=200)
    role: str = Field(max_length=32)
    password_hash: str = Field(max_length=200)
    active: bool = True
    created_at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger)


class AuthSession(SQLModel, table=True):
    """One login: holds the refresh token's hash; access tokens carry its id and die with it."""

    __tablename__ = "auth_sessions"
    id: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(foreign_key="users.id", index=True, max_length=64)
    refresh_hash: str = Field(index=True, max_length=128)
    expires_at_ms: int = Field(sa_type=BigInteger)
    revoked_at_ms: int | None = Field(default=None, sa_type=BigInteger)
    created_at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger)
    ip: str | None = Field(default=None, max_length=64)


class ApiKey(SQLModel, table=True):
    """A machine credential (printer host, PACS gateway); acts as its own principal within a site."""

    __tablename__ = "api_keys"
    id: str = Field(primary_key=True, max_length=64)
    site_id: str = Field(foreign_key="sites.id", index=True, max_length=64)
    name: str = Field(max_length=200)
    role: str = Field(default="technician", max_length=32)
    key_hash: str = Field(max_length=128)
    created_by: str = Field(foreign_key="users.id", max_length=64)
    created_at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger)
    last_used_at_ms: int | None = Field(default=None, sa_type=BigInteger)
    revoked_at_ms: int | None = Field(default=None, sa_type=BigInteger)
