"""REST: the audit trail for site admins: browse with filters, export CSV, verify the hash chain.

Visibility (the choice a successor may question): a site's admins see the rows their own users wrote
and the rows about their site's rooms and cases, whoever wrote them, so site A's admin sees site B's
surgeon opening site A's case, and site B's admin sees it too. There is no alliance-wide view: no one
site administers another's patients. Verification walks the whole chain (it must, to find a gap) but
answers only with sequence numbers and row ids, never another site's content.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlmodel import Session, col, or_, select
from sqlmodel.sql.expression import SelectOfScalar

from server.accounts.models import User
from server.core import audit
from server.core.audit import AuditEvent
from server.core.auth import Principal
from server.core.errors import Forbidden
from server.deps import CurrentPrincipal, client_ip
from server.record.edge import in_db

router = APIRouter(prefix="/api/admin", tags=["admin"])
PAGE_MAX = 500
CSV_MAX_ROWS = 200_000
CSV_BATCH = 2000
CSV_COLUMNS = (
    "seq", "time_utc", "actor_id", "actor_username", "actor_site_id", "action", "target_type", "target_id",
    "room_id", "case_id", "subject_site_id", "ip", "details", "row_hash",
)  # fmt: skip


def require_admin(principal: Principal) -> None:
    if not principal.is_admin or principal.api_key_id:
        raise Forbidden("only site admins read the audit trail")


def _filtered(
    principal: Principal,
    *,
    user_id: str | None,
    action: str | None,
    case_id: str | None,
    room_id: str | None,
    since_ms: int | None,
    until_ms: int | None,
) -> SelectOfScalar[AuditEvent]:
    site = principal.site_id
    query = select(AuditEvent).where(or_(AuditEvent.actor_site_id == site, AuditEvent.subject_site_id == site))
    if user_id:
        query = query.where(AuditEvent.actor_id == user_id)
    if action:
        # "plan.*" matches every plan action; anything else is exact.
        prefix = action.removesuffix("*")
        query = query.where(
            col(AuditEvent.action).startswith(prefix) if action.endswith("*") else AuditEvent.action == action
        )
    if case_id:
        query = query.where(AuditEvent.case_id == case_id)
    if room_id:
        query = query.where(AuditEvent.room_id == room_id)
    if since_ms is not None:
        query = query.where(col(AuditEvent.ts_ms) >= since_ms)
    if until_ms is not None:
        query = query.where(col(AuditEvent.ts_ms) < until_ms)
    return query


def public(event: AuditEvent, usernames: dict[str, str]) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "ts_ms": event.ts_ms,
        "actor_id": event.actor_id,
        "actor_username": usernames.get(event.actor_id or ""),
        "actor_site_id": event.actor_site_id,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "room_id": event.room_id,
        "case_id": event.case_id,
        "subject_site_id": event.subject_site_id,
        "ip": event.ip,
        "details": event.details,
        "row_hash": event.row_hash,
    }


def _usernames(db: Session, events: list[AuditEvent]) -> dict[str, str]:
    ids = {e.actor_id for e in events if e.actor_id}
    return {u.id: u.username for u in db.exec(select(User).where(col(User.id).in_(ids))).all()} if ids else {}


@router.get("/audit")
async def browse(
    principal: CurrentPrincipal,
    request: Request,
    user_id: str | None = Query(None, max_length=64),
    action: str | None = Query(None, max_length=64),
    case_id: str | None = Query(None, max_length=64),
    room_id: str | None = Query(None, max_length=64),
    since_ms: int | None = Query(None, ge=0),
    until_ms: int | None = Query(None, ge=0),
    before_seq: int | None = Query(None, ge=1, description="keyset paging: rows older than this seq"),
    limit: int = Query(100, ge=1, le=PAGE_MAX),
) -> dict[str, Any]:
    """Newest first; pass `next_before_seq` back as `before_seq` for the next page."""
    require_admin(principal)
    filters = {"user_id": user_id, "action": action, "case_id": case_id, "room_id": room_id}
    query = _filtered(principal, **filters, since_ms=since_ms, until_ms=until_ms)
    if before_seq is not None:
        query = query.where(col(AuditEvent.seq) < before_seq)
    query = query.order_by(col(AuditEvent.seq).desc()).limit(limit)

    def run(db: Session) -> dict[str, Any]:
        rows = list(db.exec(query).all())
        names = _usernames(db, rows)
        more = len(rows) == limit
        return {"rows": [public(r, names) for r in rows], "next_before_seq": rows[-1].seq if more else None}

    return await in_db(request, run, write=False)


def _cell(value: Any) -> str:
    text = "" if value is None else value if isinstance(value, str) else orjson.dumps(value).decode()
    # A cell starting with = + - @ is a formula to a spreadsheet: defuse it (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@router.get("/audit.csv")
async def export_csv(
    principal: CurrentPrincipal,
    request: Request,
    user_id: str | None = Query(None, max_length=64),
    action: str | None = Query(None, max_length=64),
    case_id: str | None = Query(None, max_length=64),
    room_id: str | None = Query(None, max_length=64),
    since_ms: int | None = Query(None, ge=0),
    until_ms: int | None = Query(None, ge=0),
) -> StreamingResponse:
    """Oldest first, every matching row (up to CSV_MAX_ROWS), streamed; the export itself is audited."""
    require_admin(principal)
    filters = {"user_id": user_id, "action": action, "case_id": case_id, "room_id": room_id}
    base = _filtered(principal, **filters, since_ms=since_ms, until_ms=until_ms)
    database = request.app.state.db

    def record_export(db: Session) -> None:
        audit.record_by(db, principal, "audit.export", ip=client_ip(request), format="csv", filters=filters)

    await in_db(request, record_export)

    def lines() -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        after, sent = 0, 0
        with database.session() as db:
            while sent < CSV_MAX_ROWS:
                batch = list(
                    db.exec(base.where(col(AuditEvent.seq) > after).order_by(col(AuditEvent.seq)).limit(CSV_BATCH))
                )
                names = _usernames(db, batch)
                for event in batch:
                    row = public(event, names)
                    row["time_utc"] = datetime.fromtimestamp(event.ts_ms / 1000, UTC).isoformat()
                    writer.writerow([_cell(row[c]) for c in CSV_COLUMNS])
                yield out.getvalue()
                out.seek(0)
                out.truncate()
                sent += len(batch)
                if len(batch) < CSV_BATCH:
                    return
                after = batch[-1].seq or after
                db.expunge_all()

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="trinity-audit.csv"', "cache-control": "no-store"},
    )


@router.get("/audit/verify")
async def verify(principal: CurrentPrincipal, request: Request) -> dict[str, Any]:
    """Recompute the hash chain: `ok` false names each modified, deleted or foreign row by seq and id."""
    require_admin(principal)

    def run(db: Session) -> dict[str, Any]:
        report = audit.verify_chain(db)
        audit.record_by(db, principal, "audit.verify", ip=client_ip(request), ok=report.ok, rows=report.rows_checked)
        return {
            "ok": report.ok,
            "rows_checked": report.rows_checked,
            "head_seq": report.head_seq,
            "head_hash": report.head_hash,
            "problems": report.problems,
        }

    return await in_db(request, run)
