"""REST: the consultation report PDF of a room, generated on request and audited as an export."""

from __future__ import annotations

import asyncio
import re

from fastapi import APIRouter, Request, Response
from sqlmodel import Session

from server.core import audit
from server.core.errors import Forbidden
from server.deps import CurrentPrincipal, client_ip
from server.record.edge import config_of, in_db
from server.record.report_data import ReportData, gather
from server.record.report_pdf import render
from server.rooms import repository as rooms

router = APIRouter(prefix="/api", tags=["record"])


@router.get("/rooms/{room_id}/report.pdf")
async def report(room_id: str, principal: CurrentPrincipal, request: Request) -> Response:
    blobs = request.app.state.blobs

    def run(db: Session) -> ReportData:
        room, role = rooms.require_member(db, room_id, principal)
        if role == "observer":
            raise Forbidden("observers cannot export the consultation report")
        # Audited before it is built: an export that fails half-way was still attempted.
        audit.record_by(
            db,
            principal,
            "record.report_export",
            target_type="room",
            target_id=room_id,
            room_id=room_id,
            ip=client_ip(request),
            format="pdf",
        )
        return gather(
            db, room_id=room.id, generated_by=principal.user_id, config=config_of(request), blob_path=blobs.path_of
        )

    data = await in_db(request, run)
    pdf = await asyncio.to_thread(render, data)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", (data.case or {}).get("label") or data.room["title"]).strip("-")
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            "content-disposition": f'attachment; filename="trinity-report-{name or room_id}.pdf"',
            "cache-control": "no-store",
        },
    )
