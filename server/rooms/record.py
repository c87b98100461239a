"""The consultation record as seen in the room: plan versions and snapshots. PURE.

Plans and snapshots live in SQL (server/record); the room only shows them. The REST edge stores a plan
version or a decision first and then publishes it here as a system op, so every participant sees
"version 3 proposed", "approved by Dr. B" and new snapshots live, and a late joiner gets them in the
welcome snapshot. Only the system user may send these ops: clients cannot fake an approval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.rooms.protocol import ErrorCode, OpRejected, identifier, require

RECORD_OP_KINDS = frozenset({"plan.propose", "plan.decide", "record.snapshot"})
PLAN_DECISIONS = ("approved", "rejected")
SNAPSHOTS_KEPT = 100
MAX_TEXT_CHARS = 2000


@dataclass(frozen=True)
class RecordDecision:
    kind: str
    data: dict[str, Any]


def _version(value: Any) -> int:
    require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, "version must be >= 1")
    return int(value)


def _text(value: Any, field: str) -> str:
    require(isinstance(value, str) and len(value) <= MAX_TEXT_CHARS, f"{field} must be at most {MAX_TEXT_CHARS} chars")
    return str(value)


def decide_record(
    plans: dict[str, dict[str, Any]], is_system: bool, kind: str, payload: dict[str, Any]
) -> RecordDecision:
    if not is_system:
        raise OpRejected(ErrorCode.FORBIDDEN, f"{kind} is done through the REST API, not sent by clients")
    if kind == "plan.propose":
        plan_id = identifier(payload.get("plan_id"), "plan_id")
        require(plan_id not in plans, f"plan version {plan_id!r} was already published")
        supersedes = payload.get("supersedes", [])
        require(isinstance(supersedes, list) and all(isinstance(s, str) for s in supersedes), "supersedes: ids")
        data = {
            "plan_id": plan_id,
            "version": _version(payload.get("version")),
            "status": "pending",
            "content_hash": identifier(payload.get("content_hash"), "content_hash"),
            "proposed_by": identifier(payload.get("proposed_by"), "proposed_by"),
            "notes": _text(payload.get("notes", ""), "notes"),
            "artifacts": list(payload.get("artifacts", [])),
            "annotation_ids": list(payload.get("annotation_ids", [])),
            "supersedes": [s for s in supersedes if s in plans],
        }
        return RecordDecision("plan.proposed", data)
    if kind == "plan.decide":
        plan_id = identifier(payload.get("plan_id"), "plan_id")
        plan = plans.get(plan_id)
        require(plan is not None, f"no plan version {plan_id!r} in this room")
        assert plan is not None
        status = payload.get("status")
        require(status in PLAN_DECISIONS, f"status must be one of {list(PLAN_DECISIONS)}")
        require(plan["status"] == "pending", f"plan version {plan['version']} is already {plan['status']}")
        data = {
            "plan_id": plan_id,
            "version": plan["version"],
            "status": status,
            "decided_by": identifier(payload.get("decided_by"), "decided_by"),
            "comment": _text(payload.get("comment", ""), "comment"),
        }
        return RecordDecision("plan.decided", data)
    if kind == "record.snapshot":
        data = {
            "id": identifier(payload.get("id"), "id"),
            "kind": identifier(payload.get("kind"), "kind"),
            "url": _text(payload.get("url"), "url"),
            "label": _text(payload.get("label", ""), "label"),
            "created_by": identifier(payload.get("created_by"), "created_by"),
        }
        return RecordDecision("record.snapshot_added", data)
    raise OpRejected(ErrorCode.UNKNOWN_TYPE, f"unknown record op {kind!r}")


def evolve_record(plans: dict[str, dict[str, Any]], snapshots: list[dict[str, Any]], event: dict[str, Any]) -> None:
    kind, data = event["kind"], event["data"]
    if kind == "plan.proposed":
        plans[data["plan_id"]] = {**data, "superseded_by": None, "proposed_at": event.get("ts")}
        for old in data.get("supersedes", []):
            if old in plans:
                plans[old]["superseded_by"] = data["plan_id"]
    elif kind == "plan.decided":
        plan = plans.get(data["plan_id"])
        if plan is not None:
            plan.update(status=data["status"], decided_by=data["decided_by"], comment=data["comment"])
            plan["decided_at"] = event.get("ts")
    elif kind == "record.snapshot_added":
        snapshots.append({**data, "ts": event.get("ts")})
        del snapshots[:-SNAPSHOTS_KEPT]
