"""Printing in SQL: printer rows ↔ `fleet.PrinterSpec`, print job rows ↔ `scheduler.QueuedJob`, conditional
state transitions with their history line, and the plan gate for guides and implants.

Every function takes the session first and commits what it changes (the supervisor, the API and the job
workers all write here). A job's state only moves through `transition`, an `UPDATE … WHERE state IN (…)`:
a cancel racing a finishing slice, or two instances, change the row once, and only the winner writes
the history line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from server.core.auth import new_id
from server.core.db import now_ms
from server.core.errors import NotFound
from server.printing.connections import public_connection
from server.printing.drivers.base import BuildVolume, PrinterState
from server.printing.fleet import JobRequirements, PartClass, PrinterSpec, Purpose, Technology
from server.printing.models import PrinterRecord, PrintJob, PrintJobEvent
from server.printing.scheduler import Priority, QueuedJob
from server.printing.tracking import effective_state
from server.rooms.models import Room

SYSTEM = "system"
OPEN_STATES = ("preparing", "ready", "slicing", "sliced", "starting", "printing", "paused", "interrupted")
DEVICE_CLASSES = frozenset({PartClass.GUIDE, PartClass.IMPLANT})  # medical devices: from an approved plan only


# --- printers ---------------------------------------------------------------------------------------


def spec_of(row: PrinterRecord) -> PrinterSpec:
    """The pure core's view of a printer (raises InvalidPrinterSpec for a row that cannot be right)."""
    return PrinterSpec(
        id=row.id,
        name=row.name,
        site_id=row.site_id,
        technology=Technology(row.technology),
        build_volume=BuildVolume(row.build_x_mm, row.build_y_mm, row.build_z_mm),
        material=row.material,
        nozzle_mm=row.nozzle_mm,
        layer_height_mm=row.layer_height_mm,
        tags=frozenset(row.tags),
        location=row.location,
        driver=row.driver,
    )


def setup_key(printer: PrinterRecord) -> list[Any]:
    """What a print file depends on besides the part: a file sliced for another setup is sliced again."""
    volume = [printer.build_x_mm, printer.build_y_mm, printer.build_z_mm]
    return [printer.technology, printer.material, printer.nozzle_mm, printer.layer_height_mm, volume]


def driver_state(row: PrinterRecord) -> PrinterState:
    return PrinterState(row.status.get("driver_state") or PrinterState.OFFLINE.value)


def shown_state(row: PrinterRecord) -> PrinterState:
    return effective_state(driver_state(row), maintenance=row.maintenance, bed_clear=row.bed_clear)


def get_printer(
    db: Session, printer_id: str, site_id: str | None = None, *, include_retired: bool = False
) -> PrinterRecord:
    row = db.get(PrinterRecord, printer_id)
    if row is None or (site_id is not None and row.site_id != site_id):
        raise NotFound("no such printer")
    if row.retired_at_ms is not None and not include_retired:
        raise NotFound(f"printer {printer_id} is retired")
    return row


def printers(db: Session, site_id: str | None = None, *, include_retired: bool = False) -> list[PrinterRecord]:
    """The fleet (of one site, or of all), ordered by site and id; retired printers only when asked."""
    query = select(PrinterRecord).order_by(col(PrinterRecord.site_id), col(PrinterRecord.id))
    if site_id is not None:
        query = query.where(PrinterRecord.site_id == site_id)
    if not include_retired:
        query = query.where(col(PrinterRecord.retired_at_ms).is_(None))
    return list(db.exec(query).all())


def fleet_specs(db: Session, site_id: str) -> list[PrinterSpec]:
    return [spec_of(row) for row in printers(db, site_id)]


def add_printer(db: Session, row: PrinterRecord) -> PrinterRecord:
    spec_of(row)  # validated before it is stored
    db.add(row)
    db.commit()
    db.refresh(row)
    return row


def set_printer(db: Session, printer_id: str, **changes: Any) -> None:
    """Change only these columns (the supervisor's status and the API's switches never overwrite each other)."""
    db.execute(
        update(PrinterRecord).where(col(PrinterRecord.id) == printer_id).values(**changes, updated_at_ms=now_ms())
    )
    db.commit()


def reserve_printer(db: Session, printer_id: str, job_id: str) -> bool:
    """Reserve a printer for a job if it is still free and in the fleet (not retired meanwhile); not
    committed: the job's `transition` commits both, or rolls both back."""
    result = db.execute(
        update(PrinterRecord)
        .where(col(PrinterRecord.id) == printer_id, col(PrinterRecord.current_job_id).is_(None))
        .where(col(PrinterRecord.retired_at_ms).is_(None))
        .values(current_job_id=job_id, updated_at_ms=now_ms())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def printer_public(row: PrinterRecord) -> dict[str, Any]:
    status = row.status or {}
    return {
        "id": row.id,
        "site_id": row.site_id,
        "name": row.name,
        "technology": row.technology,
        "build_volume_mm": [row.build_x_mm, row.build_y_mm, row.build_z_mm],
        "material": row.material,
        "nozzle_mm": row.nozzle_mm,
        "layer_height_mm": row.layer_height_mm,
        "tags": list(row.tags),
        "location": row.location,
        "driver": row.driver,
        "connection": public_connection(row.driver, row.connection),
        "state": "retired" if row.retired_at_ms is not None else shown_state(row).value,
        "message": row.state_message or str(status.get("message") or ""),
        "maintenance": row.maintenance,
        "bed_clear": row.bed_clear,
        "queue_paused": row.queue_paused,
        "current_job_id": row.current_job_id,
        "progress": status.get("progress"),
        "layer": status.get("layer"),
        "layers": status.get("layers"),
        "eta_s": status.get("eta_s"),
        "temperatures": status.get("temperatures") or [],
        "camera_urls": status.get("cameras") or [],
        "updated_at_ms": row.updated_at_ms,
        "retired_at_ms": row.retired_at_ms,
    }


def maker_rooms(db: Session, site_id: str) -> list[str]:
    query = select(Room.id).where(Room.site_id == site_id, Room.kind == "maker", col(Room.archived_at_ms).is_(None))
    return list(db.exec(query).all())


# --- print jobs -------------------------------------------------------------------------------------


def get_job(db: Session, job_id: str, site_id: str | None = None) -> PrintJob:
    row = db.get(PrintJob, job_id)
    if row is None or (site_id is not None and row.site_id != site_id):
        raise NotFound("no such print job")
    return row


def jobs(db: Session, *, site_id: str | None = None, states: Iterable[str] | None = None) -> list[PrintJob]:
    query = select(PrintJob).order_by(col(PrintJob.created_at_ms), col(PrintJob.id))
    if site_id is not None:
        query = query.where(PrintJob.site_id == site_id)
    if states is not None:
        query = query.where(col(PrintJob.state).in_(list(states)))
    return list(db.exec(query).all())


def changed_since(db: Session, since_ms: int) -> list[PrintJob]:
    return list(db.exec(select(PrintJob).where(col(PrintJob.updated_at_ms) >= since_ms)).all())


def create_job(db: Session, row: PrintJob, *, who: str) -> PrintJob:
    row.id = row.id or new_id()
    db.add(row)
    db.flush()  # the job row first: its history line refers to it
    detail = {"part_class": row.part_class, "purpose": row.purpose, "volume_mm3": row.volume_mm3}
    db.add(PrintJobEvent(print_job_id=row.id, who=who, what="queued", detail=detail))
    db.commit()
    db.refresh(row)
    return row


def add_event(
    db: Session, job_id: str, *, who: str, what: str, printer_id: str | None = None, reason: str = "", **detail: Any
) -> None:
    """One history line (committed by the caller's next commit)."""
    db.add(
        PrintJobEvent(
            print_job_id=job_id, who=who, what=what, printer_id=printer_id, reason=reason[:2000], detail=detail
        )
    )


def transition(
    db: Session,
    job_id: str,
    *,
    allowed_from: Iterable[str] | None,
    changes: Mapping[str, Any],
    who: str,
    what: str | None,
    reason: str = "",
    **detail: Any,
) -> PrintJob | None:
    """Apply `changes` if the job is in one of `allowed_from` (None: any state); the updated row, or
    None when it was not (someone else moved it first). `what` names the history line, if any."""
    stmt = update(PrintJob).where(col(PrintJob.id) == job_id)
    if allowed_from is not None:
        stmt = stmt.where(col(PrintJob.state).in_(list(allowed_from)))
    result = db.execute(stmt.values(**changes, updated_at_ms=now_ms()))
    if not result.rowcount:  # type: ignore[attr-defined]
        db.rollback()
        return None
    row = db.get(PrintJob, job_id)
    assert row is not None
    if what is not None:
        add_event(
            db,
            job_id,
            who=who,
            what=what,
            printer_id=changes.get("printer_id", row.printer_id),
            reason=reason,
            **detail,
        )
    db.commit()
    db.refresh(row)
    return row


def history(db: Session, job_id: str) -> list[dict[str, Any]]:
    rows = db.exec(
        select(PrintJobEvent).where(PrintJobEvent.print_job_id == job_id).order_by(col(PrintJobEvent.id))
    ).all()
    return [
        {"at_ms": e.at_ms, "who": e.who, "what": e.what, "printer_id": e.printer_id, "reason": e.reason, **e.detail}
        for e in rows
    ]


def last_event(db: Session, job_id: str) -> str:
    row = db.exec(
        select(PrintJobEvent.what).where(PrintJobEvent.print_job_id == job_id).order_by(col(PrintJobEvent.id).desc())
    ).first()
    return row or "changed"


def job_public(row: PrintJob, events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "site_id": row.site_id,
        "case_id": row.case_id,
        "artifact_id": row.artifact_id,
        "name": row.name,
        "part_class": row.part_class,
        "purpose": row.purpose,
        "volume_mm3": row.volume_mm3,
        "material": row.material,
        "technology": row.technology,
        "tags": list(row.tags),
        "priority": Priority(row.priority).name.lower(),
        "surgery_at_ms": row.surgery_at_ms,
        "manual_rank": row.manual_rank,
        "released": row.released_by is not None,
        "assigned_printer_id": row.assigned_printer_id,
        "printer_id": row.printer_id,
        "state": row.state,
        "reason": row.reason,
        "wait_reason": row.wait_reason,
        "progress": row.progress,
        "layer": row.layer,
        "layers": row.layers,
        "plan_version_id": row.plan_version_id,
        "preflight": row.preflight,
        "files": row.files,
        "created_by": row.created_by,
        "created_at_ms": row.created_at_ms,
        "started_at_ms": row.started_at_ms,
        "finished_at_ms": row.finished_at_ms,
    }
    if events is not None:
        out["history"] = events
    return out


# --- the scheduler's view ---------------------------------------------------------------------------


def requirements_json(req: JobRequirements) -> dict[str, Any]:
    return {
        "part_class": req.part_class.value,
        "boxes_mm": [list(box) for box in req.boxes_mm],
        "material": req.material,
        "technology": req.technology.value if req.technology else None,
        "nozzle_mm": req.nozzle_mm,
        "tags": sorted(req.tags),
        "site_id": req.site_id,
        "purpose": req.purpose.value,
    }


def requirements_of(data: Mapping[str, Any]) -> JobRequirements:
    return JobRequirements(
        part_class=PartClass(data["part_class"]),
        boxes_mm=tuple((float(b[0]), float(b[1]), float(b[2])) for b in data["boxes_mm"]),
        material=data.get("material"),
        technology=Technology(data["technology"]) if data.get("technology") else None,
        nozzle_mm=data.get("nozzle_mm"),
        tags=frozenset(data.get("tags") or ()),
        site_id=data.get("site_id"),
        purpose=Purpose(data.get("purpose") or Purpose.CLINICAL.value),
    )


def queued_job(row: PrintJob) -> QueuedJob:
    return QueuedJob(
        id=row.id,
        requirements=requirements_of(row.preflight["requirements"]),
        created_at_s=row.created_at_ms / 1000,
        priority=Priority(row.priority),
        surgery_at_s=row.surgery_at_ms / 1000 if row.surgery_at_ms is not None else None,
        assigned_printer_id=row.assigned_printer_id,
        manual_rank=row.manual_rank,
    )


def reorder(db: Session, site_id: str, job_ids: list[str], *, who: str) -> None:
    """The operator's order: these jobs first, in this order; every other job back to the automatic order."""
    for row in jobs(db, site_id=site_id, states=("preparing", "ready")):
        rank = job_ids.index(row.id) + 1 if row.id in job_ids else None
        if rank != row.manual_rank:
            db.execute(
                update(PrintJob).where(col(PrintJob.id) == row.id).values(manual_rank=rank, updated_at_ms=now_ms())
            )
            add_event(db, row.id, who=who, what="reordered", rank=rank)
    db.commit()


# --- the plan gate ----------------------------------------------------------------------------------


def approved_plan(db: Session, artifact_id: str, part_class: PartClass) -> tuple[str | None, str | None]:
    """(plan id, content hash) of the approved plan that allows printing this artifact. Guides and implants
    need one: the record's gate refuses them otherwise (PlanNotApproved, 409)."""
    from server.record.errors import PlanNotApproved
    from server.record.plans import require_approved_plan

    plan = require_approved_plan(db, artifact_id)
    if plan is None and part_class in DEVICE_CLASSES:
        raise PlanNotApproved(f"a {part_class.value} is printed only from an approved plan that includes it")
    return (plan.id, plan.content_hash) if plan is not None else (None, None)


def report_open_jobs(db: Session, _room_id: str, case_id: str | None) -> list[dict[str, Any]]:
    """The consultation report's print section: jobs of the case not finished yet (finished ones come from
    their audited outcomes)."""
    if case_id is None:
        return []
    rows = db.exec(
        select(PrintJob).where(PrintJob.case_id == case_id, col(PrintJob.state).not_in(("done", "failed")))
    ).all()
    return [
        {
            "id": r.id,
            "artifact": r.artifact_id,
            "printer": r.printer_id or "",
            "state": r.state,
            "detail": r.reason,
            "at_ms": r.created_at_ms,
        }
        for r in rows
    ]
