"""Case lookups for machines: a study pushed by a PACS is filed under the owning site's case for that
patient (matched on the patient ID in the site's private identity table), or a new case."""

from __future__ import annotations

from sqlmodel import Session, col, select

from server.accounts.models import User
from server.cases.models import Case, CaseIdentity
from server.core import audit
from server.core.auth import new_id
from server.core.db import now_ms


def case_for_patient(
    db: Session, *, site_id: str, patient_id: str, patient_name: str, birth_date: str, source: str
) -> Case | None:
    """The site's case for this patient ID, or a new one (created in the name of the site's first admin);
    None when the site has no admin to own it."""
    if patient_id:
        found = db.exec(
            select(Case)
            .join(CaseIdentity, col(CaseIdentity.case_id) == col(Case.id))
            .where(Case.site_id == site_id, CaseIdentity.patient_id == patient_id)
            .order_by(col(Case.created_at_ms).desc())
        ).first()
        if found is not None:
            return found
    owner = db.exec(
        select(User).where(User.site_id == site_id, User.role == "admin").order_by(col(User.created_at_ms))
    ).first()
    if owner is None:
        return None
    count = len(db.exec(select(Case.id).where(Case.site_id == site_id)).all())
    case = Case(
        id=new_id(),
        site_id=site_id,
        label=f"{source.upper()}-{now_ms() // 1000}-{count + 1}",
        created_by=owner.id,
        description=f"created for a study received over {source}",
    )
    db.add(case)
    db.add(CaseIdentity(case_id=case.id, patient_name=patient_name, patient_id=patient_id, birth_date=birth_date))
    audit.record(
        db,
        "case.create",
        actor_id=None,
        actor_site_id=site_id,
        target_type="case",
        target_id=case.id,
        commit=False,
        source=source,
    )
    db.commit()
    return case
