"""The audit trail: who did what to which room or case, when and from where. Append-only, hash-chained.

`record` appends a row in the caller's transaction and links it into the chain (server.core.audit_chain).
Writers are serialized on the single chain-head row: `UPDATE audit_chain_head … RETURNING` takes the
row lock on PostgreSQL (held to commit, so concurrent writers queue instead of forking the chain) and the
write lock on SQLite (one writer at a time anyway); a rolled-back transaction rolls its row and the head
back together. Each row also names the case and the site it concerns (`case_id`, `subject_site_id`),
resolved here from the target, so a site's admins can see who touched their patients' data.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, text, update
from sqlmodel import Field, Session, SQLModel, col, select

from server.core.audit_chain import GENESIS, HASHED_FIELDS, ChainReport, ChainRow, row_digest, verify
from server.core.db import now_ms

HEAD_ID = 1
VERIFY_BATCH = 2000


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ux_audit_events_seq", "seq", unique=True),)
    id: int | None = Field(default=None, primary_key=True)
    ts_ms: int = Field(default_factory=now_ms, sa_type=BigInteger, index=True)
    actor_id: str | None = Field(default=None, index=True, max_length=64)
    actor_site_id: str | None = Field(default=None, index=True, max_length=64)
    action: str = Field(index=True, max_length=64)  # e.g. room.join, case.open, auth.login
    target_type: str = Field(default="", max_length=32)
    target_id: str = Field(default="", index=True, max_length=64)
    room_id: str | None = Field(default=None, index=True, max_length=64)
    ip: str | None = Field(default=None, max_length=64)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The case and the site the row is about (no foreign keys: rows outlive a deleted case).
    case_id: str | None = Field(default=None, index=True, max_length=64)
    subject_site_id: str | None = Field(default=None, index=True, max_length=64)
    seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))  # always set by `record`
    prev_hash: str = Field(default="", max_length=64, sa_column_kwargs={"server_default": ""})
    row_hash: str = Field(default="", max_length=64, sa_column_kwargs={"server_default": ""})


class AuditChainHead(SQLModel, table=True):
    """One row: the seq and hash of the newest audit row (the lock writers queue on)."""

    __tablename__ = "audit_chain_head"
    id: int = Field(default=HEAD_ID, primary_key=True)
    seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    last_hash: str = Field(default=GENESIS, max_length=64)


# Which case and site a target belongs to. Table names only: core does not import the domain models.
_SUBJECT_SQL = {
    "room": "SELECT case_id, site_id FROM rooms WHERE id = :id",
    "case": "SELECT id, site_id FROM cases WHERE id = :id",
    "artifact": "SELECT case_id, site_id FROM artifacts WHERE id = :id",
    "series": "SELECT case_id, NULL FROM imaging_series WHERE id = :id",
}


def _subject(session: Session, target_type: str, target_id: str, room_id: str | None) -> tuple[str | None, str | None]:
    case_id = site_id = None
    lookups = [(target_type, target_id), ("room", room_id or "")]
    for kind, ident in lookups:
        if ident and kind in _SUBJECT_SQL and case_id is None:
            row = session.execute(text(_SUBJECT_SQL[kind]), {"id": ident}).first()
            if row is not None:
                case_id, site_id = row[0], site_id or row[1]
    if case_id is not None and site_id is None:
        site_id = session.execute(text("SELECT site_id FROM cases WHERE id = :id"), {"id": case_id}).scalar()
    return case_id, site_id


def _advance_head(session: Session) -> tuple[int, str]:
    """Lock the head and take the next seq; returns (seq, hash of the row before)."""
    stmt = (
        update(AuditChainHead)
        .where(col(AuditChainHead.id) == HEAD_ID)
        .values(seq=col(AuditChainHead.seq) + 1)
        .returning(col(AuditChainHead.seq), col(AuditChainHead.last_hash))
    )
    row = session.execute(stmt).first()
    if row is None:  # a database created without migrations (tools): start the chain
        session.add(AuditChainHead(id=HEAD_ID, seq=1, last_hash=GENESIS))
        session.flush()
        return 1, GENESIS
    return int(row[0]), str(row[1])


def record(
    session: Session,
    action: str,
    *,
    actor_id: str | None,
    actor_site_id: str | None = None,
    target_type: str = "",
    target_id: str = "",
    room_id: str | None = None,
    ip: str | None = None,
    case_id: str | None = None,
    commit: bool = True,
    **details: Any,
) -> AuditEvent:
    subject_case, subject_site = _subject(session, target_type, target_id, room_id)
    seq, prev_hash = _advance_head(session)
    event = AuditEvent(
        ts_ms=now_ms(),
        action=action,
        actor_id=actor_id,
        actor_site_id=actor_site_id,
        target_type=target_type,
        target_id=target_id,
        room_id=room_id,
        ip=ip,
        details=details,
        case_id=case_id or subject_case,
        subject_site_id=subject_site,
        seq=seq,
        prev_hash=prev_hash,
    )
    event.row_hash = row_digest(content_of(event), prev_hash)
    session.add(event)
    session.execute(update(AuditChainHead).where(col(AuditChainHead.id) == HEAD_ID).values(last_hash=event.row_hash))
    if commit:
        session.commit()
    return event


def record_by(session: Session, principal: Any, action: str, **fields: Any) -> AuditEvent:
    """Record an action of a logged-in principal (anything with user_id and site_id)."""
    return record(session, action, actor_id=principal.user_id, actor_site_id=principal.site_id, **fields)


def content_of(event: AuditEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in HASHED_FIELDS}


def _chain_row(event: AuditEvent) -> ChainRow:
    return ChainRow(event.id or 0, event.seq, event.prev_hash, event.row_hash, content_of(event))


def _rows(session: Session) -> Iterator[ChainRow]:
    """Rows without a seq first (written around `record`), then the chain in seq order, in batches."""
    unchained = session.exec(select(AuditEvent).where(col(AuditEvent.seq).is_(None)).limit(VERIFY_BATCH)).all()
    yield from (_chain_row(event) for event in unchained)
    after = 0
    while True:
        query = select(AuditEvent).where(col(AuditEvent.seq) > after).order_by(col(AuditEvent.seq)).limit(VERIFY_BATCH)
        batch = session.exec(query).all()
        yield from (_chain_row(event) for event in batch)
        if len(batch) < VERIFY_BATCH:
            return
        after = batch[-1].seq or after
        session.expunge_all()  # keep memory flat on long chains


def verify_chain(session: Session) -> ChainReport:
    """Recompute the whole chain: detects modified rows, deleted rows (a gap or a short tail), foreign rows."""
    head = session.get(AuditChainHead, HEAD_ID)
    return verify(_rows(session), head.seq if head else 0, head.last_hash if head else GENESIS)
