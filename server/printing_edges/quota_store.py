"""Print quotas in SQL: a site's own limits (`print_quotas`), its usage read from its print jobs, and
admission under a per-site lock. The rules themselves are in quotas.py.

`admit` runs in the caller's transaction and holds the site's lock until the caller commits the new (or
retried) job: two requests at once cannot both take a site's last place. PostgreSQL: a row lock on the
site (`SELECT … FOR UPDATE`); SQLite: the transaction's first statement is a write, which takes the
database's write lock (SQLite has one writer at a time), so the usage it then reads is the latest.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from server.accounts.models import Site
from server.core.db import now_ms
from server.core.errors import NotFound
from server.printing.config import PrintingConfig
from server.printing.models import PrintJob, PrintQuota
from server.printing.quotas import (
    ACTIVE_STATES,
    MM3_PER_CM3,
    JobUse,
    Month,
    QuotaLimits,
    QuotaOverride,
    QuotaUsage,
    check_admission,
    effective_limits,
    month_of,
    usage_of,
)


def defaults(config: PrintingConfig) -> QuotaLimits:
    return QuotaLimits(config.printing_quota_active_jobs, config.printing_quota_monthly_volume_cm3)


def override(db: Session, site_id: str) -> QuotaOverride | None:
    row = db.get(PrintQuota, site_id)
    return QuotaOverride(row.active_jobs, row.monthly_volume_cm3) if row is not None else None


def usage(db: Session, site_id: str, month: Month, *, exclude_job: str | None = None) -> QuotaUsage:
    """The site's active jobs (any month) and the volume of `month`'s jobs that count (quotas.usage_of)."""
    in_month = (col(PrintJob.created_at_ms) >= month.start_ms) & (col(PrintJob.created_at_ms) < month.end_ms)
    query = select(PrintJob.state, PrintJob.created_at_ms, PrintJob.started_at_ms, PrintJob.volume_mm3).where(
        PrintJob.site_id == site_id, or_(col(PrintJob.state).in_(sorted(ACTIVE_STATES)), in_month)
    )
    if exclude_job is not None:
        query = query.where(PrintJob.id != exclude_job)
    jobs = [JobUse(state, created, started is not None, volume) for state, created, started, volume in db.exec(query)]
    return usage_of(jobs, month)


def lock_site(db: Session, site_id: str) -> None:
    """Serialize quota decisions of one site until the caller's transaction ends."""
    if db.get_bind().dialect.name == "postgresql":
        db.exec(select(Site.id).where(Site.id == site_id).with_for_update())
    else:
        db.execute(update(Site).where(col(Site.id) == site_id).values(name=Site.name))


def admit(
    db: Session, site_id: str, volume_mm3: float | None, config: PrintingConfig, *, exclude_job: str | None = None
) -> None:
    """Lock the site, then raise a PrintQuotaExceeded if one more job of this volume would take it past a
    limit. The caller commits (or rolls back) soon: the lock is held until then. `exclude_job`: a job
    coming back (retry) is not counted twice."""
    lock_site(db, site_id)
    month = month_of(now_ms(), config.printing_quota_timezone)
    limits = effective_limits(defaults(config), override(db, site_id))
    used = usage(db, site_id, month, exclude_job=exclude_job)
    check_admission(limits, used, max(volume_mm3 or 0.0, 0.0) / MM3_PER_CM3, site_id=site_id, month=month)


def require_site(db: Session, site_id: str) -> None:
    if db.get(Site, site_id) is None:
        raise NotFound("no such site")


def set_override(db: Session, site_id: str, changes: dict[str, Any], *, who: str) -> None:
    """Set the site's own limits named in `changes` (a None value: back to the default); committed."""
    require_site(db, site_id)
    row = db.get(PrintQuota, site_id) or PrintQuota(site_id=site_id, updated_by=who)
    for key, value in changes.items():
        setattr(row, key, value)
    row.updated_by, row.updated_at_ms = who, now_ms()
    db.add(row)
    db.commit()


def quota_public(db: Session, site_id: str, config: PrintingConfig) -> dict[str, Any]:
    require_site(db, site_id)
    month = month_of(now_ms(), config.printing_quota_timezone)
    base, own = defaults(config), override(db, site_id)
    limits = effective_limits(base, own)
    used = usage(db, site_id, month)
    row = db.get(PrintQuota, site_id)
    own_active = own is not None and own.active_jobs is not None
    own_volume = own is not None and own.monthly_volume_cm3 is not None
    return {
        "site_id": site_id,
        "month": month.label,
        "timezone": config.printing_quota_timezone,
        "active_jobs": {
            "limit": limits.active_jobs,
            "used": used.active_jobs,
            "source": "site" if own_active else "default",
        },
        "monthly_volume_cm3": {
            "limit": limits.monthly_volume_cm3,
            "used": round(used.volume_cm3, 3),
            "source": "site" if own_volume else "default",
        },
        "updated_by": row.updated_by if row is not None else None,
        "updated_at_ms": row.updated_at_ms if row is not None else None,
    }
