"""The two calls the printing edge makes into the record.

    plan = require_approved_plan(db, artifact_id)   # before queueing: raises PlanNotApproved (409)
    await print_outcome(request.app, artifact_id=…, print_job_id=…, succeeded=True, printer="P7")

`require_approved_plan` refuses a guide or implant unless a current (not superseded), approved plan
version pins that exact artifact version; store the returned plan's id and content_hash on the print job
so the printed device traces back to the approved plan. `print_outcome` audits the outcome (the report
lists it) and notifies the room by webhook and e-mail, in the background.
"""

from __future__ import annotations

from typing import Any

from server.artifacts.models import Artifact
from server.core import audit
from server.record.announce import print_notification
from server.record.plans import require_approved_plan

__all__ = ["print_outcome", "record_print_outcome", "require_approved_plan"]


def record_print_outcome(
    db: Any, *, artifact_id: str, print_job_id: str, succeeded: bool, detail: str = "", printer: str = ""
) -> None:
    """Audit-only variant for code without the app (a worker process): the report still lists it."""
    artifact = db.get(Artifact, artifact_id)
    audit.record(
        db,
        "print.finished" if succeeded else "print.failed",
        actor_id=None,
        target_type="artifact",
        target_id=artifact_id,
        room_id=artifact.room_id if artifact else None,  # on the room's timeline too
        print_job_id=print_job_id,
        printer=printer,
        detail=detail[:500],
    )


async def print_outcome(
    app: Any, *, artifact_id: str, print_job_id: str, succeeded: bool, detail: str = "", printer: str = ""
) -> None:
    """Audit a finished or failed print and notify (never raises for a notification problem)."""
    state = app.state

    def run() -> Any:
        with state.db.session() as db:
            record_print_outcome(
                db,
                artifact_id=artifact_id,
                print_job_id=print_job_id,
                succeeded=succeeded,
                detail=detail,
                printer=printer,
            )
            return print_notification(
                db,
                state.record_config,
                artifact_id=artifact_id,
                print_job_id=print_job_id,
                succeeded=succeeded,
                detail=detail,
                printer=printer,
            )

    notification = await state.db.run_write(run)
    state.notifier.submit(notification)
