"""REST for the fleet: printers (list, read, add, change, retire), their switches (maintenance, bed cleared,
queue paused) and cameras. Everyone of the site reads; technicians and admins change (edge.require_operator).

Retiring (`DELETE /api/printers/{id}`) is refused (409 `printer_in_use`, naming the jobs) while the printer
prints or a job is on it or assigned to it. Otherwise the printer leaves the fleet but keeps its row, so
the history of the jobs it printed still names it (`GET /api/printers/{id}` reads it, and
`GET /api/printers?include_retired=true` lists it); its id cannot be taken again. The supervisor stops
monitoring it, withdraws its camera and tells the maker rooms (a `printer` frame with state `retired`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy import update
from sqlmodel import Session, col

from server.core import audit
from server.core.auth import Principal
from server.core.db import now_ms
from server.core.errors import Conflict, NotFound
from server.deps import CurrentPrincipal, SessionDep
from server.printing import repository
from server.printing.drivers.base import PrinterState
from server.printing.errors import PrinterInUse
from server.printing.models import PrinterRecord, PrintJob
from server.printing.schemas import ENDED, PrinterBody, PrinterCreate, QueueSwitch, Switch, apply_update, new_printer
from server.printing_edges.deps import config_of, nudge, require_operator

router = APIRouter(prefix="/api", tags=["printing"])
ON_THE_PRINTER = (PrinterState.PRINTING, PrinterState.PAUSED)


@router.get("/printers")
def list_printers(principal: CurrentPrincipal, db: SessionDep, include_retired: bool = False) -> list[dict[str, Any]]:
    rows = repository.printers(db, principal.site_id, include_retired=include_retired)
    return [repository.printer_public(row) for row in rows]


@router.get("/printers/{printer_id}")
def read_printer(printer_id: str, principal: CurrentPrincipal, db: SessionDep) -> dict[str, Any]:
    """A retired printer too: the history of the jobs it printed names it."""
    return repository.printer_public(repository.get_printer(db, printer_id, principal.site_id, include_retired=True))


@router.post("/printers", status_code=201)
def create_printer(
    body: PrinterCreate, principal: CurrentPrincipal, db: SessionDep, request: Request
) -> dict[str, Any]:
    require_operator(principal, principal.site_id)
    row = new_printer(body, principal.site_id, config_of(request).secret_policy)
    if (existing := db.get(PrinterRecord, row.id)) is not None:
        retired = " (retired: its id stays with the jobs it printed)" if existing.retired_at_ms else ""
        raise Conflict(f"printer {row.id} exists{retired}")
    repository.add_printer(db, row)
    audit.record_by(db, principal, "printer.create", target_type="printer", target_id=row.id)
    nudge(request)
    return repository.printer_public(row)


@router.patch("/printers/{printer_id}")
def update_printer(
    printer_id: str, body: PrinterBody, principal: CurrentPrincipal, db: SessionDep, request: Request
) -> dict[str, Any]:
    row = repository.get_printer(db, printer_id, principal.site_id)
    require_operator(principal, row.site_id)
    fields = apply_update(row, body, config_of(request).secret_policy)
    db.add(row)
    db.commit()
    audit.record_by(db, principal, "printer.update", target_type="printer", target_id=row.id, fields=fields)
    nudge(request)
    return repository.printer_public(row)


def _switch(db: Session, request: Request, principal: Principal, printer_id: str, **changes: Any) -> dict[str, Any]:
    row = repository.get_printer(db, printer_id, principal.site_id)
    require_operator(principal, row.site_id)
    repository.set_printer(db, printer_id, **changes)
    audit.record_by(db, principal, "printer.switch", target_type="printer", target_id=printer_id, **changes)
    db.expire_all()
    nudge(request)
    return repository.printer_public(repository.get_printer(db, printer_id))


@router.post("/printers/{printer_id}/maintenance")
def maintenance(printer_id: str, body: Switch, principal: CurrentPrincipal, db: SessionDep, request: Request) -> Any:
    return _switch(db, request, principal, printer_id, maintenance=body.on)


@router.post("/printers/{printer_id}/bed-cleared")
def bed_cleared(printer_id: str, principal: CurrentPrincipal, db: SessionDep, request: Request) -> Any:
    row = repository.get_printer(db, printer_id, principal.site_id)
    if row.current_job_id is not None and repository.get_job(db, row.current_job_id).state not in ENDED:
        raise Conflict(f"printer {printer_id} has job {row.current_job_id} on it")
    return _switch(db, request, principal, printer_id, bed_clear=True, current_job_id=None, state_message="")


@router.post("/printers/{printer_id}/queue")
def printer_queue(
    printer_id: str, body: QueueSwitch, principal: CurrentPrincipal, db: SessionDep, request: Request
) -> Any:
    extra = {} if body.paused else {"state_message": ""}
    return _switch(db, request, principal, printer_id, queue_paused=body.paused, **extra)


@router.get("/printers/{printer_id}/camera")
def camera(printer_id: str, principal: CurrentPrincipal, db: SessionDep) -> dict[str, Any]:
    row = repository.get_printer(db, printer_id, principal.site_id)
    snapshot = f"/api/printers/{printer_id}/camera.jpg" if row.driver == "simulator" else None
    return {"urls": row.status.get("cameras") or [], "snapshot": snapshot}


@router.get("/printers/{printer_id}/camera.jpg")
async def camera_jpeg(printer_id: str, principal: CurrentPrincipal, request: Request) -> Response:
    def check() -> None:
        with request.app.state.db.session() as db:
            row = repository.get_printer(db, printer_id, principal.site_id)
            if row.driver != "simulator":
                raise NotFound("this printer's cameras are at the URLs of GET /api/printers/{id}/camera")

    await request.app.state.db.run_read(check)
    supervisor = getattr(request.app.state, "printing", None)
    jpeg = await supervisor.camera_jpeg(printer_id) if supervisor is not None else None
    if jpeg is None:
        raise Conflict("the simulated printer is not running in this instance (it is offline or supervised elsewhere)")
    return Response(jpeg, media_type="image/jpeg", headers={"cache-control": "no-store"})


@router.delete("/printers/{printer_id}")
def retire_printer(printer_id: str, principal: CurrentPrincipal, db: SessionDep, request: Request) -> dict[str, Any]:
    row = repository.get_printer(db, printer_id, principal.site_id)
    require_operator(principal, row.site_id)
    if blockers := retire_blockers(db, row):
        raise PrinterInUse(f"printer {printer_id} cannot be retired: {'; '.join(blockers)}", reasons=blockers)
    retired = db.execute(  # unless the supervisor reserved it for a job meanwhile
        update(PrinterRecord)
        .where(col(PrinterRecord.id) == printer_id, col(PrinterRecord.retired_at_ms).is_(None))
        .where(_same(col(PrinterRecord.current_job_id), row.current_job_id))
        .values(retired_at_ms=now_ms(), retired_by=principal.user_id, current_job_id=None, updated_at_ms=now_ms())
    )
    if not retired.rowcount:  # type: ignore[attr-defined]
        db.rollback()
        raise PrinterInUse(f"printer {printer_id} changed meanwhile (a job may have started): look again")
    db.commit()
    audit.record_by(db, principal, "printer.retire", target_type="printer", target_id=printer_id)
    nudge(request)
    db.expire_all()
    return repository.printer_public(repository.get_printer(db, printer_id, include_retired=True))


def retire_blockers(db: Session, row: PrinterRecord) -> list[str]:
    """Why this printer cannot leave the fleet now; empty when it can."""
    blockers = []
    if (state := repository.driver_state(row)) in ON_THE_PRINTER:
        blockers.append(f"it is {state.value}")
    if row.current_job_id is not None:
        current = db.get(PrintJob, row.current_job_id)
        if current is not None and current.state not in ENDED:
            blockers.append(f"job {current.id} is on it ({current.state})")
    for job in repository.jobs(db, site_id=row.site_id, states=repository.OPEN_STATES):
        if job.id != row.current_job_id and row.id in (job.printer_id, job.assigned_printer_id):
            blockers.append(f"job {job.id} is assigned to it ({job.state})")
    return blockers


def _same(column: Any, value: str | None) -> Any:
    return column.is_(None) if value is None else column == value
