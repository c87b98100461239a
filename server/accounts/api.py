"""REST: login/refresh/logout, me, sites, users, API keys."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlmodel import select

from server.accounts import service
from server.accounts.models import ApiKey, Site, User
from server.core import audit
from server.core import auth as core_auth
from server.core.db import now_ms
from server.core.errors import Forbidden, NotFound, Unauthenticated
from server.deps import CurrentPrincipal, SessionDep, SettingsDep, client_ip

router = APIRouter(prefix="/api", tags=["accounts"])


class LoginIn(BaseModel):
    username: str = Field(max_length=100)
    password: str = Field(max_length=1000)


class RefreshIn(BaseModel):
    refresh_token: str = Field(max_length=200)


class TokensOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


class UserPublic(BaseModel):
    id: str
    site_id: str
    username: str
    display_name: str
    role: str


class SitePublic(BaseModel):
    id: str
    name: str


class SiteCreate(BaseModel):
    id: str = Field(max_length=63)
    name: str = Field(max_length=200)


class UserCreate(BaseModel):
    username: str = Field(max_length=100)
    password: str = Field(max_length=1000)
    role: str
    display_name: str = Field(default="", max_length=200)
    email: str | None = Field(default=None, max_length=200)
    site_id: str | None = None


class ApiKeyCreate(BaseModel):
    name: str = Field(max_length=200)
    role: str = "technician"


def _public(user: User) -> UserPublic:
    return UserPublic(
        id=user.id, site_id=user.site_id, username=user.username, display_name=user.display_name, role=user.role
    )


def _tokens(pair: core_auth.TokenPair) -> TokensOut:
    return TokensOut(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in_s)


@router.post("/auth/login")
def login(body: LoginIn, request: Request, db: SessionDep, settings: SettingsDep) -> TokensOut:
    ip = client_ip(request)
    try:
        pair = core_auth.login(db, settings, body.username, body.password, ip)
    except Unauthenticated:
        audit.record(db, "auth.login_failed", actor_id=None, ip=ip, username=body.username)
        raise
    audit.record(db, "auth.login", actor_id=pair.user_id, actor_site_id=pair.site_id, ip=ip)
    return _tokens(pair)


@router.post("/auth/refresh")
def refresh(body: RefreshIn, db: SessionDep, settings: SettingsDep) -> TokensOut:
    return _tokens(core_auth.refresh(db, settings, body.refresh_token))


@router.post("/auth/logout", status_code=204)
def logout(principal: CurrentPrincipal, request: Request, db: SessionDep) -> None:
    if principal.session_id:
        core_auth.logout(db, principal.session_id)
    audit.record_by(db, principal, "auth.logout", ip=client_ip(request))


@router.get("/me")
def me(principal: CurrentPrincipal, db: SessionDep) -> UserPublic:
    if principal.api_key_id:
        return UserPublic(
            id=principal.user_id,
            site_id=principal.site_id,
            username=principal.user_id,
            display_name=principal.display_name,
            role=principal.role,
        )
    return _public(service.get_user(db, principal.user_id))


@router.get("/sites")
def list_sites(principal: CurrentPrincipal, db: SessionDep) -> list[SitePublic]:
    return [SitePublic(id=s.id, name=s.name) for s in db.exec(select(Site).order_by(Site.id)).all()]


@router.post("/sites", status_code=201)
def create_site(body: SiteCreate, principal: CurrentPrincipal, db: SessionDep) -> SitePublic:
    if not principal.is_admin:
        raise Forbidden("only admins create sites")
    site = service.create_site(db, site_id=body.id, name=body.name)
    audit.record_by(
        db,
        principal,
        "site.create",
        target_type="site",
        target_id=site.id,
    )
    return SitePublic(id=site.id, name=site.name)


@router.get("/users")
def list_users(principal: CurrentPrincipal, db: SessionDep) -> list[UserPublic]:
    """Users of the caller's own site (the people one can add to a room directly)."""
    users = db.exec(select(User).where(User.site_id == principal.site_id, User.active).order_by(User.username)).all()
    return [_public(u) for u in users]


@router.post("/users", status_code=201)
def create_user(body: UserCreate, principal: CurrentPrincipal, db: SessionDep) -> UserPublic:
    site_id = body.site_id or principal.site_id
    if not principal.is_admin or site_id != principal.site_id:
        raise Forbidden("only a site's admins create its users")
    user = service.create_user(
        db,
        site_id=site_id,
        username=body.username,
        password=body.password,
        role=body.role,
        display_name=body.display_name,
        email=body.email,
    )
    audit.record_by(
        db,
        principal,
        "user.create",
        target_type="user",
        target_id=user.id,
    )
    return _public(user)


@router.post("/api-keys", status_code=201)
def create_api_key(body: ApiKeyCreate, principal: CurrentPrincipal, db: SessionDep) -> dict[str, str]:
    if not principal.is_admin or principal.api_key_id:
        raise Forbidden("only admins create API keys")
    if body.role not in ("technician", "engineer", "observer"):
        raise Forbidden("machine keys may only act as technician, engineer or observer")
    key, token = core_auth.create_api_key(
        db, site_id=principal.site_id, name=body.name, role=body.role, created_by=principal.user_id
    )
    audit.record_by(
        db,
        principal,
        "apikey.create",
        target_type="api_key",
        target_id=key.id,
    )
    return {"id": key.id, "name": key.name, "role": key.role, "token": token}


@router.delete("/api-keys/{key_id}", status_code=204)
def revoke_api_key(key_id: str, principal: CurrentPrincipal, db: SessionDep) -> None:
    key = db.get(ApiKey, key_id)
    if not key or key.site_id != principal.site_id:
        raise NotFound("API key not found")
    if not principal.is_admin:
        raise Forbidden("only admins revoke API keys")
    key.revoked_at_ms = now_ms()
    db.add(key)
    audit.record_by(
        db,
        principal,
        "apikey.revoke",
        target_type="api_key",
        target_id=key.id,
    )
