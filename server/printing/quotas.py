"""Per-site print quotas: how many print jobs a site may have open at once, and how much material (cm³ of
part volume) it may queue per calendar month.

    limits = effective_limits(defaults, override)  # the site's override where it has one, else the defaults
    month = month_of(now_ms, "Europe/Berlin")      # the calendar month, in the print center's time zone
    used = usage_of(jobs, month)                   # QuotaUsage(active_jobs, volume_cm3)
    check_admission(limits, used, volume_cm3, site_id="site-a", month=month)  # or a PrintQuotaExceeded

What counts:
- active: the site's jobs in an open state (preparing, ready, slicing, sliced, starting, printing, paused,
  interrupted), queued in any month: each holds a place in the queue or on a printer;
- the month's volume: the part volume of the jobs queued in that month that are open or were started
  (material spoken for, or used). Refused jobs, and jobs cancelled or failed before they ever started,
  give their volume back. A job counts once, however often it is retried.
A job's volume is the part's solid volume (mm³ → cm³), the same whichever printer takes it: supports and
purge depend on the printer and are not counted.

A new job is admitted when one more active job stays within the active limit and the month's volume
plus its own stays within the monthly limit; a limit of 0 stops the site from queueing. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from server.printing.errors import ActiveJobsQuotaExceeded, MonthlyVolumeQuotaExceeded

ACTIVE_STATES = frozenset({"preparing", "ready", "slicing", "sliced", "starting", "printing", "paused", "interrupted"})
MM3_PER_CM3 = 1000.0
VOLUME_TOLERANCE_CM3 = 1e-6


@dataclass(frozen=True)
class QuotaLimits:
    active_jobs: int
    monthly_volume_cm3: float


@dataclass(frozen=True)
class QuotaOverride:
    """A site's own limits; None: that limit is the deployment's default."""

    active_jobs: int | None = None
    monthly_volume_cm3: float | None = None


def effective_limits(defaults: QuotaLimits, override: QuotaOverride | None) -> QuotaLimits:
    if override is None:
        return defaults
    return QuotaLimits(
        active_jobs=defaults.active_jobs if override.active_jobs is None else override.active_jobs,
        monthly_volume_cm3=(
            defaults.monthly_volume_cm3 if override.monthly_volume_cm3 is None else override.monthly_volume_cm3
        ),
    )


@dataclass(frozen=True)
class Month:
    label: str  # "2026-11"
    start_ms: int  # the first instant of the month in its time zone, as Unix milliseconds
    end_ms: int  # the first instant of the next month

    def __contains__(self, at_ms: int) -> bool:
        return self.start_ms <= at_ms < self.end_ms


def month_of(at_ms: int, timezone: str = "UTC") -> Month:
    """The calendar month holding `at_ms`, with its bounds in the time zone `timezone` (IANA name)."""
    zone = ZoneInfo(timezone)
    local = datetime.fromtimestamp(at_ms / 1000, zone)
    start = datetime(local.year, local.month, 1, tzinfo=zone)
    end = datetime(local.year + local.month // 12, local.month % 12 + 1, 1, tzinfo=zone)
    return Month(f"{local.year:04d}-{local.month:02d}", _ms(start), _ms(end))


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


@dataclass(frozen=True)
class JobUse:
    """What quotas need to know of one print job."""

    state: str
    created_at_ms: int
    started: bool  # it reached a printer at least once (started_at set)
    volume_mm3: float | None  # None: unknown (counted as nothing)


@dataclass(frozen=True)
class QuotaUsage:
    active_jobs: int
    volume_cm3: float


def usage_of(jobs: Iterable[JobUse], month: Month) -> QuotaUsage:
    active = 0
    volume_mm3 = 0.0
    for job in jobs:
        is_active = job.state in ACTIVE_STATES
        active += is_active
        if job.created_at_ms in month and (is_active or job.started):
            volume_mm3 += max(job.volume_mm3 or 0.0, 0.0)
    return QuotaUsage(active, round(volume_mm3 / MM3_PER_CM3, 6))


def check_admission(limits: QuotaLimits, used: QuotaUsage, volume_cm3: float, *, site_id: str, month: Month) -> None:
    """Raise ActiveJobsQuotaExceeded or MonthlyVolumeQuotaExceeded (each naming the limit, the usage and
    the limit's value) when one more job of `volume_cm3` would take the site past a limit."""
    if used.active_jobs + 1 > limits.active_jobs:
        raise ActiveJobsQuotaExceeded(
            f"site {site_id} has {used.active_jobs} active print jobs and its limit is {limits.active_jobs}: "
            "wait for one to finish, or ask an admin to raise the limit",
            quota="active_jobs",
            usage=used.active_jobs,
            limit=limits.active_jobs,
            site_id=site_id,
        )
    if used.volume_cm3 + volume_cm3 > limits.monthly_volume_cm3 + VOLUME_TOLERANCE_CM3:
        raise MonthlyVolumeQuotaExceeded(
            f"site {site_id} has queued {_cm3(used.volume_cm3)} cm³ of material in {month.label}; this part needs "
            f"{_cm3(volume_cm3)} cm³ and the monthly limit is {_cm3(limits.monthly_volume_cm3)} cm³",
            quota="monthly_volume_cm3",
            usage=round(used.volume_cm3, 3),
            limit=limits.monthly_volume_cm3,
            requested=round(volume_cm3, 3),
            month=month.label,
            site_id=site_id,
        )


def _cm3(value: float) -> str:
    return f"{round(value, 1):g}"
