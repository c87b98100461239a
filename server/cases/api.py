"""REST: patient cases. The de-identified label travels; the identity stays with the owning site."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from server.cases.models import Case, CaseIdentity
from server.core import audit
from server.core.auth import Principal, new_id
from server.core.errors import Forbidden, NotFound
from server.deps import CurrentPrincipal, SessionDep, client_ip
from server.rooms.models import Room, RoomMember

router = APIRouter(prefix="/api/cases", tags=["cases"])
IDENTITY_ROLES = ("surgeon", "radiologist", "admin")


class CaseCreate(BaseModel):
    label: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    patient_name: str = Field(default="", max_length=200)
    patient_id: str = Field(default="", max_length=100)
    birth_date: str = Field(default="", max_length=20)


class CasePublic(BaseModel):
    id: str
    site_id: str
    label: str
    description: str


class CaseIdentityOut(BaseModel):
    patient_name: str
    patient_id: str
    birth_date: str


def _public(case: Case) -> CasePublic:
    return CasePublic(id=case.id, site_id=case.site_id, label=case.label, description=case.description)


def can_view_case(db: Session, principal: Principal, case: Case) -> bool:
    """The owning site's users, and members of a room the case is attached to (de-identified view)."""
    if case.site_id == principal.site_id:
        return True
    shared = db.exec(
        select(Room.id)
        .join(RoomMember, col(RoomMember.room_id) == col(Room.id))
        .where(Room.case_id == case.id, RoomMember.user_id == principal.user_id)
    ).first()
    return shared is not None


def require_case(db: Session, principal: Principal, case_id: str) -> Case:
    """The case, if this principal may see it; 404 otherwise (existence is not theirs to know)."""
    case = db.get(Case, case_id)
    if not case or not can_view_case(db, principal, case):
        raise NotFound("case not found")
    return case


@router.post("", status_code=201)
def create_case(body: CaseCreate, principal: CurrentPrincipal, request: Request, db: SessionDep) -> CasePublic:
    if principal.role not in ("surgeon", "engineer", "radiologist", "admin"):
        raise Forbidden("only surgeons, engineers, radiologists and admins open cases")
    case = Case(
        id=new_id(),
        site_id=principal.site_id,
        label=body.label,
        description=body.description,
        created_by=principal.user_id,
    )
    db.add(case)
    db.add(
        CaseIdentity(
            case_id=case.id, patient_name=body.patient_name, patient_id=body.patient_id, birth_date=body.birth_date
        )
    )
    audit.record_by(
        db,
        principal,
        "case.create",
        target_type="case",
        target_id=case.id,
        ip=client_ip(request),
    )
    return _public(case)


@router.get("")
def list_cases(principal: CurrentPrincipal, db: SessionDep) -> list[CasePublic]:
    cases = db.exec(
        select(Case).where(Case.site_id == principal.site_id).order_by(col(Case.created_at_ms).desc())
    ).all()
    return [_public(c) for c in cases]


@router.get("/{case_id}")
def open_case(case_id: str, principal: CurrentPrincipal, request: Request, db: SessionDep) -> CasePublic:
    case = require_case(db, principal, case_id)
    audit.record_by(
        db,
        principal,
        "case.open",
        target_type="case",
        target_id=case.id,
        ip=client_ip(request),
    )
    return _public(case)


@router.get("/{case_id}/identity")
def case_identity(case_id: str, principal: CurrentPrincipal, request: Request, db: SessionDep) -> CaseIdentityOut:
    case = db.get(Case, case_id)
    if not case or case.site_id != principal.site_id:
        raise NotFound("case not found")
    if principal.role not in IDENTITY_ROLES:
        raise Forbidden("only the owning site's surgeons, radiologists and admins see the patient's identity")
    identity = db.get(CaseIdentity, case_id) or CaseIdentity(case_id=case_id)
    audit.record_by(
        db,
        principal,
        "case.identity_view",
        target_type="case",
        target_id=case.id,
        ip=client_ip(request),
    )
    return CaseIdentityOut(
        patient_name=identity.patient_name, patient_id=identity.patient_id, birth_date=identity.birth_date
    )
