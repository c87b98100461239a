"""REST for printing: the print queue and the maker dashboard's snapshot (the printers: printers_api.py;
the site's print quotas: quota_api.py).

Who may do what (a site's own users only; other sites get 404):
- everyone of the site: read the fleet, the queue, a job with its history, the cameras;
- surgeons, engineers, technicians and admins: queue a print (`POST /api/print-jobs`); guides and implants
  only from an approved plan that pins that artifact version (the record's gate, 409 otherwise), and that
  includes their fit-check copies (`purpose: fit_check`, any polymer); within the site's print quotas
  (429 `print_quota_active_jobs` or `print_quota_monthly_volume`, quotas.py);
  the one who queued a job may cancel it until it is on a printer;
- technicians and admins ("operators", API keys too): start (release to the printers) and assign,
  reorder, pause, resume, cancel, retry, confirm a bed cleared, resume a printer's queue, and add,
  change or take printers into maintenance. A job queued by an operator is released at once; one
  queued by anyone else waits in the queue until an operator starts it.
Handlers write the rows and nudge the supervisor, which acts on the printers and tells the maker rooms.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlmodel import Session

from server.artifacts import store as artifacts
from server.cases.api import require_case
from server.core import audit
from server.core.auth import Principal, new_id
from server.core.db import now_ms
from server.core.errors import Conflict, Forbidden, Invalid, NotFound
from server.deps import CurrentPrincipal, SessionDep
from server.printing import repository
from server.printing.fleet import material, purpose_problem
from server.printing.models import PrinterRecord, PrintJob
from server.printing.scheduler import queue_order
from server.printing.schemas import MESH_FORMATS, OPERATOR_ROLES, QUEUE_ROLES, Order, PrintRequestBody, Start
from server.printing.tasks import part_volume_mm3
from server.printing_edges import quota_store
from server.printing_edges.deps import config_of, nudge, require_operator
from server.rooms import repository as rooms

router = APIRouter(prefix="/api", tags=["printing"])


# --- the maker dashboard -----------------------------------------------------------------------


@router.get("/sites/{site_id}/fleet")
def fleet(site_id: str, principal: CurrentPrincipal, db: SessionDep) -> dict[str, Any]:
    """The maker dashboard's snapshot: printers with state and current job, open jobs, the queue in order."""
    if principal.site_id != site_id:
        raise NotFound("not found")
    open_jobs = repository.jobs(db, site_id=site_id, states=repository.OPEN_STATES)
    ready = [j for j in open_jobs if j.state == "ready" and "requirements" in j.preflight]
    order = [q.id for q in queue_order([repository.queued_job(j) for j in ready])]
    return {
        "site_id": site_id,
        "printers": [repository.printer_public(row) for row in repository.printers(db, site_id)],
        "jobs": [_brief(j) for j in open_jobs],
        "queue": order,
        "at_ms": now_ms(),
    }


def _brief(row: PrintJob) -> dict[str, Any]:
    return {k: v for k, v in repository.job_public(row).items() if k not in ("preflight", "files")}


# --- the queue --------------------------------------------------------------------------------------


@router.post("/print-jobs", status_code=201)
def queue_print(body: PrintRequestBody, principal: CurrentPrincipal, db: SessionDep, request: Request) -> Any:
    if principal.role not in QUEUE_ROLES:
        raise Forbidden("surgeons, engineers, technicians and admins queue prints")
    artifact = artifacts.get(db, body.artifact_id)
    require_case(db, principal, artifact.case_id)
    if artifact.kind in ("guide", "implant") and body.part_class.value != artifact.kind:
        raise Invalid(f"a {artifact.kind} artifact is printed as a {artifact.kind}, not as {body.part_class.value}")
    if not any(fmt in artifact.files for fmt in MESH_FORMATS):
        raise Invalid(f"artifact {artifact.id} ({artifact.kind}) has no mesh to print")
    if (problem := purpose_problem(body.part_class, body.purpose)) is not None:
        raise Invalid(problem)
    if body.material is not None:
        material(body.material)  # UnknownMaterial (422) names the known ones
    plan_id, plan_hash = repository.approved_plan(db, artifact.id, body.part_class)
    room_id = body.room_id if body.room_id is not None else artifact.room_id
    if body.room_id is not None:
        rooms.require_member(db, body.room_id, principal)
    elif room_id is not None and rooms.room_role(db, room_id, principal) is None:
        room_id = None  # the artifact's room is not the caller's: progress goes only to the maker rooms
    priority = body.priority_value()
    operator = principal.role in OPERATOR_ROLES
    volume_mm3 = part_volume_mm3(artifact, request.app.state.settings)
    quota_store.admit(db, principal.site_id, volume_mm3, config_of(request))  # the site stays locked until stored
    row = repository.create_job(
        db,
        PrintJob(
            id=new_id(),
            site_id=principal.site_id,
            case_id=artifact.case_id,
            artifact_id=artifact.id,
            name=artifact.name,
            plan_version_id=plan_id,
            plan_content_hash=plan_hash,
            part_class=body.part_class.value,
            purpose=body.purpose.value,
            volume_mm3=volume_mm3,
            material=body.material,
            technology=body.technology.value if body.technology else None,
            tags=sorted(set(body.tags)),
            priority=int(priority),
            surgery_at_ms=int(body.surgery_at.timestamp() * 1000) if body.surgery_at else None,
            released_by=principal.user_id if operator else None,
            created_by=principal.user_id,
            room_id=room_id,
        ),
        who=principal.user_id,
    )
    audit.record_by(
        db,
        principal,
        "print.queue",
        target_type="artifact",
        target_id=artifact.id,
        print_job_id=row.id,
        plan_id=plan_id,
        purpose=row.purpose,
    )
    nudge(request)
    return repository.job_public(row)


@router.get("/print-jobs")
def list_jobs(principal: CurrentPrincipal, db: SessionDep, state: str | None = None) -> list[dict[str, Any]]:
    states = state.split(",") if state else None
    return [_brief(row) for row in repository.jobs(db, site_id=principal.site_id, states=states)]


@router.get("/print-jobs/{job_id}")
def read_job(job_id: str, principal: CurrentPrincipal, db: SessionDep) -> dict[str, Any]:
    row = repository.get_job(db, job_id, principal.site_id)
    return repository.job_public(row, repository.history(db, job_id))


def _move(
    db: Session,
    request: Request,
    principal: Principal,
    job_id: str,
    allowed: tuple[str, ...],
    changes: dict[str, Any],
    what: str,
    **detail: Any,
) -> dict[str, Any]:
    row = repository.get_job(db, job_id, principal.site_id)
    moved = repository.transition(
        db, job_id, allowed_from=allowed, changes=changes, who=principal.user_id, what=what, **detail
    )
    if moved is None:
        raise Conflict(f"print job {job_id} is {row.state}: cannot {what} it now")
    nudge(request)
    return repository.job_public(moved)


@router.post("/print-jobs/{job_id}/start")
def start(job_id: str, body: Start, principal: CurrentPrincipal, db: SessionDep, request: Request) -> Any:
    require_operator(principal, repository.get_job(db, job_id, principal.site_id).site_id)
    changes: dict[str, Any] = {"released_by": principal.user_id}
    if body.printer_id is not None:
        changes["assigned_printer_id"] = repository.get_printer(db, body.printer_id, principal.site_id).id
    return _move(db, request, principal, job_id, ("preparing", "ready"), changes, "released", printer=body.printer_id)


@router.post("/print-jobs/{job_id}/assign")
def assign(job_id: str, body: Start, principal: CurrentPrincipal, db: SessionDep, request: Request) -> Any:
    require_operator(principal, repository.get_job(db, job_id, principal.site_id).site_id)
    if body.printer_id is not None:
        repository.get_printer(db, body.printer_id, principal.site_id)
    changes = {"assigned_printer_id": body.printer_id, "wait_reason": ""}
    return _move(
        db, request, principal, job_id, ("preparing", "ready"), changes, "assigned_by_hand", printer=body.printer_id
    )


@router.post("/sites/{site_id}/print-queue/order")
def reorder(site_id: str, body: Order, principal: CurrentPrincipal, db: SessionDep, request: Request) -> Any:
    require_operator(principal, site_id)
    repository.reorder(db, site_id, body.job_ids, who=principal.user_id)
    nudge(request)
    return fleet(site_id, principal, db)["queue"]


@router.post("/print-jobs/{job_id}/pause")
def pause(job_id: str, principal: CurrentPrincipal, db: SessionDep, request: Request) -> Any:
    require_operator(principal, repository.get_job(db, job_id, principal.site_id).site_id)
    return _move(
        db,
        request,
        principal,
        job_id,
        ("printing",),
        {"command": "pause", "command_by": principal.user_id},
        "pause_requested",
    )


@router.post("/print-jobs/{job_id}/resume")
def resume(job_id: str, principal: CurrentPrincipal, db: SessionDep, request: Request) -> Any:
    require_operator(principal, repository.get_job(db, job_id, principal.site_id).site_id)
    return _move(
        db,
        request,
        principal,
        job_id,
        ("paused",),
        {"command": "resume", "command_by": principal.user_id},
        "resume_requested",
    )


@router.post("/print-jobs/{job_id}/cancel")
def cancel(job_id: str, principal: CurrentPrincipal, db: SessionDep, request: Request) -> Any:
    row = repository.get_job(db, job_id, principal.site_id)
    off_printer = ("preparing", "ready", "refused", "slicing", "sliced")
    if principal.role not in OPERATOR_ROLES and not (row.created_by == principal.user_id and row.state in off_printer):
        raise Forbidden("technicians and admins cancel prints; the one who queued a job, until it is on a printer")
    if row.state in ("starting", "printing", "paused"):  # the printer must stop: the supervisor tells it
        return _move(
            db,
            request,
            principal,
            job_id,
            ("starting", "printing", "paused"),
            {"command": "cancel", "command_by": principal.user_id},
            "cancel_requested",
        )
    changes = {"state": "cancelled", "finished_at_ms": now_ms(), "command": None}
    result = _move(db, request, principal, job_id, (*off_printer, "interrupted"), changes, "cancelled")
    printer = db.get(PrinterRecord, row.printer_id) if row.printer_id else None
    if printer is not None and printer.current_job_id == job_id:  # its reservation ends; a partial print may remain
        repository.set_printer(
            db, printer.id, current_job_id=None, **({"bed_clear": False} if row.state == "interrupted" else {})
        )
    return result


@router.post("/print-jobs/{job_id}/retry")
def retry(job_id: str, principal: CurrentPrincipal, db: SessionDep, request: Request) -> Any:
    row = repository.get_job(db, job_id, principal.site_id)
    require_operator(principal, row.site_id)
    again = row.state == "refused" or "requirements" not in row.preflight
    changes: dict[str, Any] = {
        "state": "preparing" if again else "ready",
        "printer_id": None,
        "remote_file": None,
        "command": None,
        "task_job_id": None,
        "reason": "",
        "wait_reason": "",
        "progress": 0.0,
        "layer": None,
        "started_at_ms": None,
        "finished_at_ms": None,
    }
    retried_from = ("failed", "cancelled", "interrupted", "refused")
    if row.state in retried_from:  # back in the queue: within the site's quotas again
        quota_store.admit(db, row.site_id, row.volume_mm3, config_of(request), exclude_job=row.id)
    result = _move(db, request, principal, job_id, retried_from, changes, "retry")
    printer = db.get(PrinterRecord, row.printer_id) if row.printer_id else None
    if printer is not None and printer.current_job_id == job_id:
        repository.set_printer(db, printer.id, current_job_id=None, bed_clear=False)
    return result
