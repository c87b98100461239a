"""Recording consent: who must agree, when the owner may start, and when a recording must stop.

Pure. A room is recorded only while every user present in it (online on any instance, whatever
their role: an observer is heard and seen in the room too) has consented. Consent is per user, kept
for the media session, and can be withdrawn at any moment; a recording stops by itself as soon as
someone present has not consented (a withdrawal, or a newcomer who has not agreed yet).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from server.rooms.protocol import ErrorCode, OpRejected


@dataclass
class Consent:
    consents: set[str] = field(default_factory=set)
    active: bool = False
    by: str | None = None
    since_ms: int | None = None
    last_artifact_id: str | None = None

    def missing(self, present: set[str]) -> set[str]:
        return present - self.consents

    def check_start(self, *, user_id: str, role: str, present: set[str]) -> None:
        """Raise OpRejected unless `user_id` may start a recording now."""
        if role != "owner":
            raise OpRejected(ErrorCode.FORBIDDEN, "only the room owner starts or stops a recording")
        if self.active:
            raise OpRejected(ErrorCode.CONFLICT, "the room is already being recorded")
        missing = self.missing(present)
        if missing:
            raise OpRejected(
                ErrorCode.CONFLICT, "every participant present must consent first", missing=sorted(missing)
            )

    def check_stop(self, *, role: str) -> None:
        if role != "owner":
            raise OpRejected(ErrorCode.FORBIDDEN, "only the room owner starts or stops a recording")
        if not self.active:
            raise OpRejected(ErrorCode.CONFLICT, "the room is not being recorded")

    def stop_reason(self, present: set[str]) -> str | None:
        """Why an active recording must stop now, or None."""
        if not self.active:
            return None
        if not present:
            return "room_empty"
        if self.missing(present):
            return "consent_missing"
        return None

    def started(self, user_id: str, at_ms: int) -> None:
        self.active, self.by, self.since_ms = True, user_id, at_ms

    def stopped(self) -> None:
        self.active, self.by, self.since_ms = False, None, None

    def frame(self, present: set[str]) -> dict[str, Any]:
        return {
            "active": self.active,
            "by": self.by,
            "since_ms": self.since_ms,
            "consents": sorted(self.consents),
            "required": sorted(present),
            "missing": sorted(self.missing(present)),
            "last_artifact_id": self.last_artifact_id,
        }
