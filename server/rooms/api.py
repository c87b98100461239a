"""REST: create, list and archive rooms; members; invite links; the room's event history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlmodel import Session

from server.core import audit
from server.core.auth import Principal
from server.core.errors import Conflict
from server.deps import CurrentPrincipal, client_ip
from server.rooms import repository
from server.rooms.commands import MemberInfo
from server.rooms.models import Room
from server.rooms.protocol import OpRejected
from server.rooms.store import RoomLog

router = APIRouter(prefix="/api", tags=["rooms"])
T = TypeVar("T")


class RoomCreate(BaseModel):
    kind: str = "consultation"
    title: str = Field(default="", max_length=200)
    case_id: str | None = None


class RoomPublic(BaseModel):
    id: str
    kind: str
    title: str
    site_id: str
    case_id: str | None
    owner_id: str
    archived: bool
    role: str | None = None


class MemberPublic(BaseModel):
    user_id: str
    display_name: str
    site_id: str
    role: str


class MemberAdd(BaseModel):
    user_id: str
    role: str = "participant"


class CaseAttach(BaseModel):
    case_id: str


class InviteCreate(BaseModel):
    role: str = "participant"
    expires_in_s: int = 7 * 24 * 3600
    max_uses: int = 1


class InviteOut(BaseModel):
    id: str
    token: str
    url: str
    role: str
    expires_at_ms: int
    max_uses: int


def _public(room: Room, role: str | None = None) -> RoomPublic:
    return RoomPublic(
        id=room.id,
        kind=room.kind,
        title=room.title,
        site_id=room.site_id,
        case_id=room.case_id,
        owner_id=room.owner_id,
        archived=room.archived_at_ms is not None,
        role=role,
    )


async def _in_db(request: Request, fn: Callable[[Session], T]) -> T:
    def run() -> T:
        with request.app.state.db.session() as db:
            return fn(db)

    return await request.app.state.db.run_read(run)


def _audit(db: Session, principal: Principal, action: str, room_id: str, request: Request, **details: Any) -> None:
    audit.record_by(
        db,
        principal,
        action,
        target_type="room",
        target_id=room_id,
        room_id=room_id,
        ip=client_ip(request),
        **details,
    )


@router.post("/rooms", status_code=201)
async def create_room(body: RoomCreate, principal: CurrentPrincipal, request: Request) -> RoomPublic:
    def run(db: Session) -> RoomPublic:
        room = repository.create_room(db, principal, kind=body.kind, title=body.title, case_id=body.case_id)
        _audit(db, principal, "room.create", room.id, request, kind=room.kind)
        return _public(room, "owner")

    return await _in_db(request, run)


@router.get("/rooms")
async def list_rooms(principal: CurrentPrincipal, request: Request, archived: bool = False) -> list[RoomPublic]:
    return await _in_db(
        request, lambda db: [_public(r, role) for r, role in repository.list_my_rooms(db, principal, archived)]
    )


@router.get("/rooms/{room_id}")
async def get_room(room_id: str, principal: CurrentPrincipal, request: Request) -> RoomPublic:
    def run(db: Session) -> RoomPublic:
        room, role = repository.require_member(db, room_id, principal)
        return _public(room, role)

    return await _in_db(request, run)


@router.get("/rooms/{room_id}/members")
async def list_members(room_id: str, principal: CurrentPrincipal, request: Request) -> list[MemberPublic]:
    def run(db: Session) -> list[MemberPublic]:
        repository.require_member(db, room_id, principal)
        return [
            MemberPublic(user_id=m.user_id, display_name=m.display_name, site_id=m.site_id, role=m.role)
            for m in repository.members(db, room_id)
        ]

    return await _in_db(request, run)


async def _sync_hub(request: Request, room_id: str) -> None:
    """Tell this instance's live room about membership changes (on the event loop, not a DB thread)."""
    hub = request.app.state.hubs.loaded(room_id)
    if hub is None:
        return
    current = {m.user_id: m for m in await _in_db(request, lambda db: repository.members(db, room_id))}
    for user_id in list(hub.members):
        if user_id not in current:
            hub.remove_member(user_id)
    for m in current.values():
        hub.add_member(MemberInfo(m.user_id, m.display_name, m.site_id, m.role))


@router.post("/rooms/{room_id}/members", status_code=201)
async def add_member(room_id: str, body: MemberAdd, principal: CurrentPrincipal, request: Request) -> MemberPublic:
    def run(db: Session) -> MemberPublic:
        member = repository.add_member(db, principal, room_id, body.user_id, body.role)
        _audit(db, principal, "room.member_add", room_id, request, user_id=body.user_id, role=body.role)
        view = next(m for m in repository.members(db, room_id) if m.user_id == member.user_id)
        return MemberPublic(user_id=view.user_id, display_name=view.display_name, site_id=view.site_id, role=view.role)

    added = await _in_db(request, run)
    await _sync_hub(request, room_id)
    return added


@router.delete("/rooms/{room_id}/members/{user_id}", status_code=204)
async def remove_member(room_id: str, user_id: str, principal: CurrentPrincipal, request: Request) -> None:
    def run(db: Session) -> None:
        repository.remove_member(db, principal, room_id, user_id)
        _audit(db, principal, "room.member_remove", room_id, request, user_id=user_id)

    await _in_db(request, run)
    await _sync_hub(request, room_id)


@router.put("/rooms/{room_id}/case")
async def attach_case(room_id: str, body: CaseAttach, principal: CurrentPrincipal, request: Request) -> RoomPublic:
    def run(db: Session) -> RoomPublic:
        room = repository.attach_case(db, principal, room_id, body.case_id)
        _audit(db, principal, "room.case_attach", room_id, request, case_id=body.case_id)
        return _public(room)

    return await _in_db(request, run)


@router.post("/rooms/{room_id}/invites", status_code=201)
async def create_invite(room_id: str, body: InviteCreate, principal: CurrentPrincipal, request: Request) -> InviteOut:
    settings = request.app.state.settings

    def run(db: Session) -> InviteOut:
        invite, token = repository.create_invite(
            db,
            principal,
            room_id,
            role=body.role,
            expires_in_s=body.expires_in_s,
            max_uses=body.max_uses,
            ttl_max_s=settings.invite_ttl_max_s,
        )
        _audit(db, principal, "room.invite_create", room_id, request, invite_id=invite.id, role=invite.role)
        url = str(request.base_url).rstrip("/") + f"/#/invite/{token}"
        return InviteOut(
            id=invite.id,
            token=token,
            url=url,
            role=invite.role,
            expires_at_ms=invite.expires_at_ms,
            max_uses=invite.max_uses,
        )

    return await _in_db(request, run)


@router.delete("/rooms/{room_id}/invites/{invite_id}", status_code=204)
async def revoke_invite(room_id: str, invite_id: str, principal: CurrentPrincipal, request: Request) -> None:
    def run(db: Session) -> None:
        repository.revoke_invite(db, principal, room_id, invite_id)
        _audit(db, principal, "room.invite_revoke", room_id, request, invite_id=invite_id)

    await _in_db(request, run)


@router.post("/invites/{token}/accept")
async def accept_invite(token: str, principal: CurrentPrincipal, request: Request) -> RoomPublic:
    def run(db: Session) -> RoomPublic:
        room, member = repository.accept_invite(db, principal, token)
        _audit(db, principal, "room.invite_accept", room.id, request, role=member.role)
        return _public(room, repository.effective_role(member.role, principal.role))

    accepted = await _in_db(request, run)
    await _sync_hub(request, accepted.id)
    return accepted


@router.post("/rooms/{room_id}/archive")
async def archive_room(room_id: str, principal: CurrentPrincipal, request: Request) -> RoomPublic:
    room = await _in_db(request, lambda db: repository.require_manager(db, room_id, principal))
    if room.archived_at_ms:
        raise Conflict("the room is already archived")
    hub = await request.app.state.hubs.get(room_id)
    try:
        await hub.system_op("room.archive", {})
    except OpRejected as exc:
        raise Conflict(exc.message) from exc

    def run(db: Session) -> RoomPublic:
        fresh = repository.get_room(db, room_id)
        repository.mark_archived(db, fresh)
        _audit(db, principal, "room.archive", room_id, request)
        return _public(fresh)

    return await _in_db(request, run)


@router.get("/rooms/{room_id}/events")
async def room_events(
    room_id: str,
    principal: CurrentPrincipal,
    request: Request,
    after: int = Query(0, ge=0),
    limit: int = Query(500, ge=1, le=5000),
) -> list[dict[str, Any]]:
    def run(db: Session) -> list[dict[str, Any]]:
        repository.require_member(db, room_id, principal)
        return RoomLog(request.app.state.db.engine).events_after(room_id, after, limit)

    return await _in_db(request, run)
