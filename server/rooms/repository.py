"""Rooms, membership and invites in the database (the rooms repository) for REST and the WebSocket join.

Authorization for rooms lives here, once: `room_role` says what a principal is in a room (or None).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlmodel import Session, col, select

from server.accounts.models import User
from server.cases.models import Case
from server.core.auth import Principal, new_id, token_digest
from server.core.db import now_ms
from server.core.errors import Conflict, Forbidden, Gone, Invalid, NotFound
from server.rooms.models import Room, RoomInvite, RoomMember
from server.rooms.state import RoomRole

ROOM_KINDS = ("consultation", "maker")
INVITE_ROLES = ("participant", "observer")


def effective_role(member_role: str, user_role: str) -> RoomRole:
    """A user whose account role is observer is an observer in every room, whatever the invite said."""
    if user_role == "observer":
        return "observer"
    return member_role  # type: ignore[return-value]


def get_room(db: Session, room_id: str) -> Room:
    room = db.get(Room, room_id)
    if not room:
        raise NotFound("room not found")
    return room


def room_role(db: Session, room_id: str, principal: Principal) -> RoomRole | None:
    member = db.get(RoomMember, (room_id, principal.user_id))
    return effective_role(member.role, principal.role) if member else None


def require_member(db: Session, room_id: str, principal: Principal) -> tuple[Room, RoomRole]:
    """Non-members get 404, not 403: a room's existence is itself not theirs to know."""
    room = get_room(db, room_id)
    role = room_role(db, room_id, principal)
    if role is None:
        raise NotFound("room not found")
    return room, role


def can_manage(room: Room, role: RoomRole | None, principal: Principal) -> bool:
    """Owners, and admins of the room's own site, manage members, invites and archiving."""
    return role == "owner" or (principal.is_admin and principal.site_id == room.site_id)


def require_manager(db: Session, room_id: str, principal: Principal) -> Room:
    room = get_room(db, room_id)
    role = room_role(db, room_id, principal)
    if role is None and not (principal.is_admin and principal.site_id == room.site_id):
        raise NotFound("room not found")
    if not can_manage(room, role, principal):
        raise Forbidden("only the room's owners and its site's admins may do this")
    return room


def create_room(db: Session, principal: Principal, *, kind: str, title: str, case_id: str | None) -> Room:
    if kind not in ROOM_KINDS:
        raise Invalid(f"kind must be one of {list(ROOM_KINDS)}")
    if principal.role == "observer" or principal.api_key_id:
        raise Forbidden("observers and machine keys cannot create rooms")
    if case_id is not None:
        check_case_for_room(db, principal, case_id)
    room = Room(
        id=new_id(),
        site_id=principal.site_id,
        kind=kind,
        title=title.strip() or "Consultation",
        case_id=case_id,
        owner_id=principal.user_id,
        epoch=secrets.token_hex(8),
    )
    db.add(room)
    db.add(RoomMember(room_id=room.id, user_id=principal.user_id, role="owner"))
    db.commit()
    return room


def check_case_for_room(db: Session, principal: Principal, case_id: str) -> Case:
    case = db.get(Case, case_id)
    if not case or case.site_id != principal.site_id:
        raise NotFound("case not found")  # only the owning site attaches its cases
    return case


def attach_case(db: Session, principal: Principal, room_id: str, case_id: str) -> Room:
    room = require_manager(db, room_id, principal)
    check_case_for_room(db, principal, case_id)
    room.case_id = case_id
    db.add(room)
    db.commit()
    return room


def list_my_rooms(db: Session, principal: Principal, include_archived: bool = False) -> list[tuple[Room, RoomRole]]:
    rows = db.exec(
        select(Room, RoomMember)
        .join(RoomMember, col(RoomMember.room_id) == col(Room.id))
        .where(RoomMember.user_id == principal.user_id)
        .order_by(col(Room.created_at_ms).desc())
    ).all()
    return [
        (room, effective_role(member.role, principal.role))
        for room, member in rows
        if include_archived or not room.archived_at_ms
    ]


@dataclass(frozen=True)
class MemberView:
    user_id: str
    display_name: str
    site_id: str
    role: RoomRole


def members(db: Session, room_id: str) -> list[MemberView]:
    rows = db.exec(
        select(RoomMember, User)
        .join(User, col(User.id) == col(RoomMember.user_id))
        .where(RoomMember.room_id == room_id)
    ).all()
    return [MemberView(u.id, u.display_name, u.site_id, effective_role(m.role, u.role)) for m, u in rows]


def add_member(db: Session, principal: Principal, room_id: str, user_id: str, role: str) -> RoomMember:
    room = require_manager(db, room_id, principal)
    if role not in ("owner", *INVITE_ROLES):
        raise Invalid("role must be owner, participant or observer")
    user = db.get(User, user_id)
    if not user or user.site_id != room.site_id:
        # Cross-site membership only through an invite link, which the remote user accepts themselves.
        raise Forbidden("users of other sites join only through an invite link")
    member = db.get(RoomMember, (room_id, user_id)) or RoomMember(room_id=room_id, user_id=user_id, role=role)
    member.role = role
    db.add(member)
    db.commit()
    return member


def remove_member(db: Session, principal: Principal, room_id: str, user_id: str) -> None:
    room = require_manager(db, room_id, principal)
    member = db.get(RoomMember, (room_id, user_id))
    if not member:
        raise NotFound("not a member")
    if member.user_id == room.owner_id:
        raise Conflict("the room's creator cannot be removed")
    db.delete(member)
    db.commit()


def create_invite(
    db: Session, principal: Principal, room_id: str, *, role: str, expires_in_s: int, max_uses: int, ttl_max_s: int
) -> tuple[RoomInvite, str]:
    room = require_manager(db, room_id, principal)
    if room.archived_at_ms:
        raise Conflict("the room is archived")
    if role not in INVITE_ROLES:
        raise Invalid(f"invite role must be one of {list(INVITE_ROLES)}")
    if not 60 <= expires_in_s <= ttl_max_s:
        raise Invalid(f"expires_in_s must be between 60 and {ttl_max_s}")
    if not 1 <= max_uses <= 100:
        raise Invalid("max_uses must be between 1 and 100")
    token = secrets.token_urlsafe(24)
    invite = RoomInvite(
        id=new_id(),
        room_id=room_id,
        token_hash=token_digest(token),
        role=role,
        expires_at_ms=now_ms() + expires_in_s * 1000,
        max_uses=max_uses,
        created_by=principal.user_id,
    )
    db.add(invite)
    db.commit()
    return invite, token


def accept_invite(db: Session, principal: Principal, token: str) -> tuple[Room, RoomMember]:
    invite = db.exec(select(RoomInvite).where(RoomInvite.token_hash == token_digest(token))).first()
    if not invite:
        raise NotFound("invite not found")
    if invite.revoked_at_ms or invite.expires_at_ms < now_ms():
        raise Gone("invite expired or revoked")
    if principal.api_key_id:
        raise Forbidden("machine keys cannot accept invites")
    room = get_room(db, invite.room_id)
    if room.archived_at_ms:
        raise Gone("the room is archived")
    existing = db.get(RoomMember, (room.id, principal.user_id))
    if existing:
        return room, existing  # accepting twice is harmless and does not use up the invite
    if invite.uses >= invite.max_uses:
        raise Gone("invite has been used up")
    invite.uses += 1
    member = RoomMember(room_id=room.id, user_id=principal.user_id, role=invite.role, via_invite=invite.id)
    db.add(invite)
    db.add(member)
    db.commit()
    return room, member


def revoke_invite(db: Session, principal: Principal, room_id: str, invite_id: str) -> None:
    require_manager(db, room_id, principal)
    invite = db.get(RoomInvite, invite_id)
    if not invite or invite.room_id != room_id:
        raise NotFound("invite not found")
    invite.revoked_at_ms = now_ms()
    db.add(invite)
    db.commit()


def mark_archived(db: Session, room: Room) -> None:
    room.archived_at_ms = now_ms()
    db.add(room)
    db.commit()


def latest_open_room(db: Session, case_id: str) -> Room | None:
    """The most recent room showing a case that is not archived (where machine-started jobs report)."""
    return db.exec(
        select(Room)
        .where(Room.case_id == case_id, col(Room.archived_at_ms).is_(None))
        .order_by(col(Room.created_at_ms).desc())
    ).first()
