"""REST: alliance administration beyond accounts/api.py: sites (name, storage quota and usage), the
site's users (role, active, contact), roles, the site's open invitations and cross-site members, and
retention (erasing a case, confirmed with the admin's password)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import update
from sqlmodel import Session, col, select

from server.accounts.models import AuthSession, Site, User, UserRole
from server.cases.models import Case
from server.core import audit
from server.core.auth import Principal
from server.core.db import now_ms
from server.core.errors import Conflict, Forbidden, Invalid, NotFound
from server.deps import CurrentPrincipal, client_ip
from server.record import retention
from server.record.audit_api import require_admin
from server.record.edge import config_of, in_db
from server.record.reauth import confirm_password
from server.rooms.models import Room, RoomInvite, RoomMember
from server.rooms.protocol import OpRejected

router = APIRouter(prefix="/api/admin", tags=["admin"])
log = logging.getLogger("trinity.record")
ROLE_DESCRIPTIONS = {
    "surgeon": "plans and approves; sees the identity of the own site's patients",
    "engineer": "designs guides and implants; proposes plans",
    "radiologist": "imaging; sees the identity of the own site's patients",
    "technician": "runs the printers",
    "observer": "watches rooms read-only",
    "admin": "manages the site's users, quotas, audit and retention",
}


class SiteUpdate(BaseModel):
    name: str | None = Field(default=None, max_length=200)
    storage_quota_bytes: int | None = Field(default=None, ge=0, description="null: unlimited")


class UserUpdate(BaseModel):
    role: str | None = None
    active: bool | None = None
    display_name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=200)


class CaseErase(BaseModel):
    password: str = Field(min_length=1, max_length=1000)
    reason: str = Field(min_length=3, max_length=500)


def _may_set_quota(principal: Principal, site_id: str, alliance_site_id: str) -> bool:
    # Quotas are an alliance limit: set by the coordinating site's admins when one is configured.
    return principal.site_id == (alliance_site_id or site_id)


@router.get("/sites")
async def sites(principal: CurrentPrincipal, request: Request) -> list[dict[str, Any]]:
    require_admin(principal)
    rows = await in_db(request, lambda db: list(db.exec(select(Site).order_by(Site.id))), write=False)
    out = []
    for site in rows:
        used = await request.app.state.blobs.usage(site.id)
        out.append(
            {"id": site.id, "name": site.name, "storage_quota_bytes": site.storage_quota_bytes, "used_bytes": used}
        )
    return out


@router.patch("/sites/{site_id}")
async def update_site(site_id: str, body: SiteUpdate, principal: CurrentPrincipal, request: Request) -> dict[str, Any]:
    require_admin(principal)
    alliance = config_of(request).alliance_site_id

    def run(db: Session) -> dict[str, Any]:
        site = db.get(Site, site_id)
        if site is None:
            raise NotFound("site not found")
        changes: dict[str, Any] = {}
        if body.name is not None:
            if principal.site_id not in (site_id, alliance):
                raise Forbidden("only the site's own admins rename it")
            site.name = changes["name"] = body.name.strip() or site.name
        if "storage_quota_bytes" in body.model_fields_set:
            if not _may_set_quota(principal, site_id, alliance):
                raise Forbidden("storage quotas are set by the alliance's coordinating site")
            site.storage_quota_bytes = changes["storage_quota_bytes"] = body.storage_quota_bytes
        db.add(site)
        audit.record_by(
            db, principal, "site.update", target_type="site", target_id=site_id, ip=client_ip(request), **changes
        )
        return {"id": site.id, "name": site.name, "storage_quota_bytes": site.storage_quota_bytes}

    return await in_db(request, run)


def _user(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "site_id": user.site_id,
        "username": user.username,
        "display_name": user.display_name,
        "email": user.email,
        "role": user.role,
        "active": user.active,
        "created_at_ms": user.created_at_ms,
    }


@router.get("/users")
async def users(principal: CurrentPrincipal, request: Request) -> list[dict[str, Any]]:
    """Every user of the admin's site, inactive ones too."""
    require_admin(principal)
    query = select(User).where(User.site_id == principal.site_id).order_by(User.username)
    return await in_db(request, lambda db: [_user(u) for u in db.exec(query)], write=False)


@router.patch("/users/{user_id}")
async def update_user(user_id: str, body: UserUpdate, principal: CurrentPrincipal, request: Request) -> dict[str, Any]:
    require_admin(principal)
    if body.role is not None and body.role not in {r.value for r in UserRole}:
        raise Invalid(f"role must be one of {[r.value for r in UserRole]}")

    def run(db: Session) -> dict[str, Any]:
        user = db.get(User, user_id)
        if user is None or user.site_id != principal.site_id:
            raise NotFound("user not found")
        if user.id == principal.user_id and (body.role not in (None, user.role) or body.active is False):
            raise Conflict("admins cannot demote or deactivate themselves (ask another admin)")
        changes = body.model_dump(exclude_unset=True)
        for name, value in changes.items():
            setattr(user, name, value)
        db.add(user)
        if body.active is False:  # sign out everywhere at once
            db.execute(
                update(AuthSession)
                .where(col(AuthSession.user_id) == user.id, col(AuthSession.revoked_at_ms).is_(None))
                .values(revoked_at_ms=now_ms())
            )
        audit.record_by(
            db, principal, "user.update", target_type="user", target_id=user.id, ip=client_ip(request), **changes
        )
        return _user(user)

    return await in_db(request, run)


@router.get("/roles")
def roles(principal: CurrentPrincipal) -> list[dict[str, str]]:
    return [{"role": r.value, "description": ROLE_DESCRIPTIONS.get(r.value, "")} for r in UserRole]


@router.get("/invites")
async def invites(principal: CurrentPrincipal, request: Request) -> dict[str, list[dict[str, Any]]]:
    """Open invitations to the site's rooms, and the members from other sites in them."""
    require_admin(principal)

    def run(db: Session) -> dict[str, list[dict[str, Any]]]:
        now = now_ms()
        open_invites = db.exec(
            select(RoomInvite, Room)
            .join(Room, col(Room.id) == col(RoomInvite.room_id))
            .where(
                Room.site_id == principal.site_id,
                col(RoomInvite.revoked_at_ms).is_(None),
                RoomInvite.expires_at_ms > now,
            )
        ).all()
        guests = db.exec(
            select(RoomMember, Room, User)
            .join(Room, col(Room.id) == col(RoomMember.room_id))
            .join(User, col(User.id) == col(RoomMember.user_id))
            .where(Room.site_id == principal.site_id, User.site_id != principal.site_id)
        ).all()
        return {
            "invites": [
                {"id": i.id, "room_id": r.id, "room_title": r.title, "role": i.role, "uses": i.uses,
                 "max_uses": i.max_uses, "expires_at_ms": i.expires_at_ms, "created_by": i.created_by}
                for i, r in open_invites
                if i.uses < i.max_uses
            ],
            "cross_site_members": [
                {"room_id": r.id, "room_title": r.title, "user_id": u.id, "display_name": u.display_name,
                 "site_id": u.site_id, "role": m.role}
                for m, r, u in guests
            ],
        }  # fmt: skip

    return await in_db(request, run, write=False)


@router.post("/cases/{case_id}/erase")
async def erase_case(case_id: str, body: CaseErase, principal: CurrentPrincipal, request: Request) -> dict[str, Any]:
    """Retention: remove the case everywhere. Irreversible, so the admin confirms with their password."""
    require_admin(principal)
    ip = client_ip(request)

    def check(db: Session) -> list[str]:
        case = db.get(Case, case_id)
        if case is None or case.site_id != principal.site_id:
            raise NotFound("case not found")
        confirm_password(db, principal, body.password, config=config_of(request), action="case.erase", ip=ip)
        return list(db.exec(select(Room.id).where(Room.case_id == case_id)))

    room_ids = await in_db(request, check, write=False)
    hubs = request.app.state.hubs
    for room_id in room_ids:  # archived first: no instance writes to these rooms while they are purged
        with contextlib.suppress(OpRejected):
            await (await hubs.get(room_id)).system_op("room.archive", {}, op_id=f"erase:{case_id}")
    erasure = await in_db(request, lambda db: retention.erase_case(db, principal, case_id, reason=body.reason, ip=ip))
    for room_id in erasure.room_ids:
        await hubs.evict(room_id, "the room's case was erased")
    released = 0
    for site_id, sha in await in_db(request, lambda db: retention.unused_blobs(db, erasure.blobs), write=False):
        try:
            released += bool(await request.app.state.blobs.delete(sha, site_id=site_id))
        except Exception:  # a leftover file costs quota, never correctness: log and go on
            log.exception("could not release a blob of an erased case", extra={"sha256": sha})
    return {"case_id": case_id, "rooms": erasure.room_ids, "rows": erasure.counts, "files_removed": released}
