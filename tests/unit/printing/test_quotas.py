"""Per-site print quotas: calendar months in the print center's time zone, what counts as active and as
the month's material, and admission errors that name the limit, the usage and the limit's value."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from server.printing.errors import ActiveJobsQuotaExceeded, MonthlyVolumeQuotaExceeded, PrintQuotaExceeded
from server.printing.quotas import (
    ACTIVE_STATES,
    JobUse,
    QuotaLimits,
    QuotaOverride,
    QuotaUsage,
    check_admission,
    effective_limits,
    month_of,
    usage_of,
)
from server.printing.repository import OPEN_STATES


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, tz: str = "UTC") -> int:
    return round(datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz)).timestamp() * 1000)


NOVEMBER = month_of(ms(2026, 11, 15))


def test_a_month_runs_from_its_first_midnight_to_the_next_months() -> None:
    assert NOVEMBER.label == "2026-11"
    assert NOVEMBER.start_ms == ms(2026, 11, 1) and NOVEMBER.end_ms == ms(2026, 12, 1)
    assert ms(2026, 11, 30, 23, 59) in NOVEMBER and ms(2026, 12, 1) not in NOVEMBER
    december = month_of(ms(2026, 12, 31, 23, 59))
    assert december.label == "2026-12" and december.end_ms == ms(2027, 1, 1)


def test_months_begin_at_midnight_in_the_print_centers_time_zone() -> None:
    # 23:30 UTC on 31 October is already 1 November in Berlin (UTC+1 after the clocks went back).
    late = ms(2026, 10, 31, 23, 30)
    assert month_of(late).label == "2026-10"
    berlin = month_of(late, "Europe/Berlin")
    assert berlin.label == "2026-11"
    assert berlin.start_ms == ms(2026, 11, 1, tz="Europe/Berlin") == ms(2026, 10, 31, 23, 0)
    # March in Berlin is an hour short: the clocks go forward on its last Sunday.
    march = month_of(ms(2026, 3, 10), "Europe/Berlin")
    hours = (march.end_ms - march.start_ms) / 3_600_000
    assert hours == 31 * 24 - 1
    assert datetime.fromtimestamp(march.end_ms / 1000, UTC) == datetime(2026, 3, 31, 22, 0, tzinfo=UTC)


def test_the_active_states_are_the_queues_open_states() -> None:
    assert frozenset(OPEN_STATES) == ACTIVE_STATES


def job(state: str, *, at: int = ms(2026, 11, 10), started: bool = False, mm3: float | None = 1000.0) -> JobUse:
    return JobUse(state, at, started, mm3)


def test_usage_counts_open_jobs_and_the_material_of_the_month_spoken_for_or_used() -> None:
    jobs = [
        job("ready", mm3=2500.0),  # queued: active, its material is spoken for
        job("printing", started=True, mm3=1500.0),
        job("done", started=True, mm3=4000.0),  # printed: material used, no longer active
        job("failed", started=True, mm3=500.0),  # failed on the printer: the material was used
        job("cancelled", started=False, mm3=9000.0),  # cancelled before it started: gives its volume back
        job("refused", mm3=9000.0),  # nothing could print it
        job("failed", started=False, mm3=9000.0),  # preflight failed
        job("ready", at=ms(2026, 10, 28), mm3=700.0),  # last month's: active, but its volume is October's
        job("done", at=ms(2026, 10, 28), started=True, mm3=700.0),
        job("preparing", mm3=None),  # volume not known: counts as nothing
    ]
    used = usage_of(jobs, NOVEMBER)
    assert used.active_jobs == 4
    assert used.volume_cm3 == pytest.approx(2.5 + 1.5 + 4.0 + 0.5)


def test_site_limits_override_the_defaults_one_by_one() -> None:
    defaults = QuotaLimits(active_jobs=200, monthly_volume_cm3=50_000.0)
    assert effective_limits(defaults, None) == defaults
    assert effective_limits(defaults, QuotaOverride(active_jobs=5)) == QuotaLimits(5, 50_000.0)
    assert effective_limits(defaults, QuotaOverride(monthly_volume_cm3=0.0)) == QuotaLimits(200, 0.0)


def test_one_more_job_within_both_limits_is_admitted() -> None:
    limits = QuotaLimits(active_jobs=3, monthly_volume_cm3=100.0)
    check_admission(limits, QuotaUsage(2, 60.0), 40.0, site_id="site-a", month=NOVEMBER)  # exactly at the limits


def test_the_active_jobs_limit_names_itself_the_usage_and_the_limit() -> None:
    limits = QuotaLimits(active_jobs=3, monthly_volume_cm3=100.0)
    with pytest.raises(ActiveJobsQuotaExceeded) as raised:
        check_admission(limits, QuotaUsage(3, 0.0), 1.0, site_id="site-a", month=NOVEMBER)
    error = raised.value
    assert isinstance(error, PrintQuotaExceeded) and error.status == 429
    assert error.code == "print_quota_active_jobs"
    assert error.details == {"quota": "active_jobs", "usage": 3, "limit": 3, "site_id": "site-a"}
    assert "site site-a has 3 active print jobs and its limit is 3" in error.message


def test_the_monthly_volume_limit_names_itself_the_usage_the_limit_and_the_part() -> None:
    limits = QuotaLimits(active_jobs=3, monthly_volume_cm3=100.0)
    with pytest.raises(MonthlyVolumeQuotaExceeded) as raised:
        check_admission(limits, QuotaUsage(0, 95.25), 12.5, site_id="site-a", month=NOVEMBER)
    error = raised.value
    assert error.status == 429 and error.code == "print_quota_monthly_volume"
    assert error.details == {
        "quota": "monthly_volume_cm3",
        "usage": 95.25,
        "limit": 100.0,
        "requested": 12.5,
        "month": "2026-11",
        "site_id": "site-a",
    }
    assert "queued 95.2 cm³ of material in 2026-11; this part needs 12.5 cm³" in error.message


def test_a_limit_of_zero_stops_a_site_from_queueing() -> None:
    with pytest.raises(ActiveJobsQuotaExceeded):
        check_admission(QuotaLimits(0, 100.0), QuotaUsage(0, 0.0), 0.0, site_id="s", month=NOVEMBER)
    with pytest.raises(MonthlyVolumeQuotaExceeded):
        check_admission(QuotaLimits(5, 0.0), QuotaUsage(0, 0.0), 0.001, site_id="s", month=NOVEMBER)
