"""The record's domain failures (mapped to HTTP by the app's one TrinityError handler)."""

from __future__ import annotations

from server.core.errors import Conflict, Forbidden


class PlanNotApproved(Conflict):
    """A guide or implant is not pinned by a current, approved plan version: it may not be printed."""

    code = "plan_not_approved"


class ReauthenticationFailed(Forbidden):
    """The password confirming a decision was wrong (403, not 401: the session itself is fine)."""

    code = "reauthentication_failed"
