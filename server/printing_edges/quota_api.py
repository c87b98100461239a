"""REST for a site's print quotas (the rules: quotas.py; in SQL: quota_store.py).

- `GET /api/sites/{site}/print-quota`: the limits in force (the site's own, or the defaults of
  TRINITY_PRINTING_QUOTA_*), what the site uses now (active jobs, this calendar month's volume in cm³) and
  whose limits they are; for everyone of the site, and for the alliance's coordinating site's admins.
- `PATCH /api/sites/{site}/print-quota` `{"active_jobs": 10, "monthly_volume_cm3": 2500.0}`: set the site's
  own limits; a limit sent as null goes back to the default, one not sent stays. Admins, by the rule of the
  storage quota: the coordinating site's admins (TRINITY_ALLIANCE_SITE_ID) when there is one, else the
  site's own. Audited.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from server.core import audit
from server.core.auth import Principal
from server.core.errors import Forbidden, NotFound
from server.deps import CurrentPrincipal, SessionDep, client_ip
from server.printing_edges import quota_store
from server.printing_edges.deps import config_of

router = APIRouter(prefix="/api", tags=["printing"])


class QuotaUpdate(BaseModel):
    active_jobs: int | None = Field(default=None, ge=0, description="open print jobs at once; null: the default")
    monthly_volume_cm3: float | None = Field(
        default=None, ge=0, description="part volume queued per calendar month; null: the default"
    )


def _coordinating_site(request: Request) -> str:
    return str(getattr(request.app.state.settings, "alliance_site_id", "") or "")


def _may_read(principal: Principal, site_id: str, request: Request) -> bool:
    coordinator = _coordinating_site(request)
    return principal.site_id == site_id or (principal.role == "admin" and principal.site_id == coordinator)


@router.get("/sites/{site_id}/print-quota")
def read_quota(site_id: str, principal: CurrentPrincipal, db: SessionDep, request: Request) -> dict[str, Any]:
    if not _may_read(principal, site_id, request):
        raise NotFound("not found")
    return quota_store.quota_public(db, site_id, config_of(request))


@router.patch("/sites/{site_id}/print-quota")
def update_quota(
    site_id: str, body: QuotaUpdate, principal: CurrentPrincipal, db: SessionDep, request: Request
) -> dict[str, Any]:
    if not _may_read(principal, site_id, request):
        raise NotFound("not found")
    if principal.role != "admin" or principal.site_id != (_coordinating_site(request) or site_id):
        raise Forbidden("print quotas are set by admins (of the alliance's coordinating site, when there is one)")
    changes = body.model_dump(include=body.model_fields_set)
    quota_store.set_override(db, site_id, changes, who=principal.user_id)
    audit.record_by(
        db,
        principal,
        "print_quota.update",
        target_type="site",
        target_id=site_id,
        ip=client_ip(request),
        **changes,
    )
    return quota_store.quota_public(db, site_id, config_of(request))
