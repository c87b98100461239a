"""Printing records in SQL: the fleet (printers and their live state), print jobs and their history, and
each site's own print quotas.

Connection secrets are never stored here in clear: `connection` holds the host URL and a *reference*
to the API key (`env:NAME` or `file:/run/secrets/name`), resolved by the supervisor when it connects,
and never returned by the API.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Column
from sqlmodel import Field, SQLModel

from server.core.db import now_ms


class PrinterRecord(SQLModel, table=True):
    __tablename__ = "printers"
    id: str = Field(primary_key=True, max_length=64)
    site_id: str = Field(foreign_key="sites.id", index=True, max_length=64)
    name: str = Field(max_length=200)
    technology: str = Field(max_length=16)  # fdm | sla | metal | ceramic | bio
    build_x_mm: float
    build_y_mm: float
    build_z_mm: float
    material: str | None = Field(default=None, max_length=40)
    nozzle_mm: float | None = None
    layer_height_mm: float | None = None
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    location: str = Field(default="", max_length=200)
    driver: str = Field(default="simulator", max_length=20)  # simulator | octoprint | moonraker
    connection: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # What everyone sees (PrinterState values): the host's state, overridden by maintenance and by a
    # finished print nobody has cleared yet (bed-not-cleared).
    state: str = Field(default="offline", max_length=20)
    state_message: str = Field(default="", max_length=500)
    maintenance: bool = False
    bed_clear: bool = True  # an operator confirmed the bed is empty since the last print
    queue_paused: bool = False  # a printer error pauses its queue until an operator resumes it
    current_job_id: str | None = Field(default=None, max_length=64)  # reserved from slicing to the end
    # The host's last report: driver_state, progress, layer, layers, eta_s, temperatures, job_file, cameras.
    status: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger)
    updated_at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger)
    # A retired printer leaves the fleet but keeps its row (and id) for the history of the jobs it printed.
    retired_at_ms: int | None = Field(default=None, sa_type=BigInteger)
    retired_by: str | None = Field(default=None, max_length=64)


class PrintJob(SQLModel, table=True):
    __tablename__ = "print_jobs"
    id: str = Field(primary_key=True, max_length=64)
    site_id: str = Field(foreign_key="sites.id", index=True, max_length=64)
    case_id: str = Field(foreign_key="cases.id", index=True, max_length=64)
    artifact_id: str = Field(max_length=64)
    name: str = Field(default="", max_length=200)  # the artifact's name, for the dashboard
    plan_version_id: str | None = Field(default=None, max_length=64)  # the approved plan that allowed it
    plan_content_hash: str | None = Field(default=None, max_length=64)
    part_class: str = Field(max_length=20)  # anatomical_model | guide | implant | scaffold | tissue
    purpose: str = Field(default="clinical", max_length=20)  # clinical | fit_check (fleet.Purpose)
    volume_mm3: float | None = None  # the part's solid volume, counted against the site's monthly quota
    material: str | None = Field(default=None, max_length=40)
    technology: str | None = Field(default=None, max_length=16)
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    priority: int = 0  # scheduler.Priority: 0 routine .. 3 emergency; ordered after the surgery date
    surgery_at_ms: int | None = Field(default=None, sa_type=BigInteger)
    manual_rank: int | None = None  # an operator's reordering: lower first, ahead of the automatic order
    released_by: str | None = Field(default=None, max_length=64)  # a technician/admin let it start
    assigned_printer_id: str | None = Field(default=None, max_length=64)  # manual assignment
    printer_id: str | None = Field(default=None, index=True, max_length=64)
    # preparing | ready | refused | slicing | sliced | printing | paused | done | failed | cancelled | interrupted
    state: str = Field(default="preparing", index=True, max_length=20)
    reason: str = Field(default="", max_length=2000)  # why refused, failed or interrupted
    wait_reason: str = Field(default="", max_length=500)  # why a ready job is not printing yet
    task_job_id: str | None = Field(default=None, max_length=64)  # the running prepare or slice job
    remote_file: str | None = Field(default=None, max_length=200)  # the print file's name on the host
    command: str | None = Field(default=None, max_length=20)  # pause | resume | cancel, for the supervisor
    command_by: str | None = Field(default=None, max_length=64)
    preflight: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    files: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))  # per printer
    progress: float = 0.0
    layer: int | None = None
    layers: int | None = None
    created_by: str = Field(max_length=64)
    room_id: str | None = Field(default=None, max_length=64)  # where its prepare/slice jobs report
    created_at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger)
    updated_at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger, index=True)
    started_at_ms: int | None = Field(default=None, sa_type=BigInteger)
    finished_at_ms: int | None = Field(default=None, sa_type=BigInteger)


class PrintJobEvent(SQLModel, table=True):
    """A print job's history, one row per step (append-only): who, what, when, on which printer, why."""

    __tablename__ = "print_job_events"
    id: int | None = Field(default=None, primary_key=True)
    print_job_id: str = Field(foreign_key="print_jobs.id", index=True, max_length=64)
    at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger)
    who: str = Field(max_length=64)  # a user id, or "system" for the supervisor and the jobs
    what: str = Field(max_length=40)  # queued, ready, refused, assigned, sliced, started, done, failed...
    printer_id: str | None = Field(default=None, max_length=64)
    reason: str = Field(default="", max_length=2000)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class PrintQuota(SQLModel, table=True):
    """A site's own print quotas; a missing row or a null limit means the deployment's default
    (TRINITY_PRINTING_QUOTA_*)."""

    __tablename__ = "print_quotas"
    site_id: str = Field(primary_key=True, foreign_key="sites.id", max_length=64)
    active_jobs: int | None = None
    monthly_volume_cm3: float | None = None
    updated_by: str = Field(max_length=64)
    updated_at_ms: int = Field(default_factory=now_ms, sa_type=BigInteger)
