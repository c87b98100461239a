"""The demo install `make run` starts with: one site, two users, a case, a room, a simulated fleet of
printers and its maker room."""

from __future__ import annotations

from sqlmodel import Session, select

from server.accounts import service as accounts
from server.accounts.models import Site, User
from server.cases.models import Case, CaseIdentity
from server.core.auth import Principal
from server.printing.demo_fleet import seed_demo_fleet
from server.rooms import repository as rooms
from server.rooms.models import Room, RoomMember

DEMO_SITE = "demo-hospital"
DEMO_USERS = (
    ("surgeon", "surgeon-demo-pass", "surgeon", "Dr. Ada Surgeon"),
    ("engineer", "engineer-demo-pass", "engineer", "Eli Engineer"),
    ("technician", "technician-demo-pass", "technician", "Tia Technician"),  # starts prints in the maker room
)
DEMO_ROOM_TITLE = "Demo: mandible reconstruction"


def seed_demo(db: Session) -> Room:
    """Idempotent: creates whatever of the demo is missing and returns the demo room."""
    if not db.get(Site, DEMO_SITE):
        accounts.create_site(db, site_id=DEMO_SITE, name="Demo University Hospital")
    users = {}
    for username, password, role, name in DEMO_USERS:
        user = db.exec(select(User).where(User.username == username)).first()
        users[username] = user or accounts.create_user(
            db, site_id=DEMO_SITE, username=username, password=password, role=role, display_name=name
        )
    owner = users["surgeon"]
    principal = Principal(owner.id, owner.site_id, owner.role, owner.display_name)
    seed_demo_fleet(db, DEMO_SITE, maker_room_owner=principal)  # ~20 simulated printers and a maker room
    room = db.exec(select(Room).where(Room.title == DEMO_ROOM_TITLE, Room.site_id == DEMO_SITE)).first()
    if room:
        return room
    case = Case(
        id="demo-case", site_id=DEMO_SITE, label="DEMO-MAND-001", description="Synthetic demo case", created_by=owner.id
    )
    if not db.get(Case, case.id):
        db.add(case)
        db.add(CaseIdentity(case_id=case.id, patient_name="Synthetic^Patient", patient_id="DEMO0001"))
        db.commit()
    room = rooms.create_room(db, principal, kind="consultation", title=DEMO_ROOM_TITLE, case_id=case.id)
    db.add(RoomMember(room_id=room.id, user_id=users["engineer"].id, role="participant"))
    db.commit()
    return room
