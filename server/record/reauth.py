"""Re-authentication: a decision (approving a plan, erasing a case) is confirmed with the user's password,
checked on that very request. Failures are audited, and too many in a window pause further attempts,
so a left-open session cannot be used to guess the password."""

from __future__ import annotations

from sqlmodel import Session, col, func, select

from server.accounts.models import User
from server.core import audit
from server.core.audit import AuditEvent
from server.core.auth import Principal, verify_password
from server.core.db import now_ms
from server.core.errors import Forbidden, RateLimited
from server.record.config import RecordConfig
from server.record.errors import ReauthenticationFailed

FAILED = "auth.reauth_failed"


def confirm_password(
    db: Session, principal: Principal, password: str, *, config: RecordConfig, action: str, ip: str | None
) -> None:
    """Raise unless `password` is the principal's own; call before changing anything in `db`."""
    if principal.api_key_id:
        raise Forbidden("machine keys cannot confirm decisions")
    since = now_ms() - config.reauth_window_s * 1000
    failures = db.exec(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.action == FAILED, AuditEvent.actor_id == principal.user_id, col(AuditEvent.ts_ms) >= since)
    ).one()
    if failures >= config.reauth_max_failures:
        raise RateLimited(f"too many wrong passwords; try again in {config.reauth_window_s // 60} minutes")
    user = db.get(User, principal.user_id)
    if user is None or not user.active or not verify_password(user.password_hash, password):
        audit.record_by(db, principal, FAILED, ip=ip, attempted=action)
        raise ReauthenticationFailed("the password does not match; the decision was not recorded")
