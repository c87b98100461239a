"""The room's view of the record (server/rooms/record.py through the state machine): only the system
publishes plans and snapshots; versions, decisions and supersession fold into the state and snapshot."""

from __future__ import annotations

from typing import Any

import pytest

from server.rooms.protocol import ErrorCode, OpRejected
from server.rooms.state import Actor, RoomState, decide, evolve

SYSTEM = Actor("system", "system")
OWNER = Actor("u1", "owner")


def apply(state: RoomState, actor: Actor, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    decision = decide(state, actor, kind, payload)
    event = {
        "seq": state.seq + 1,
        "kind": decision.kind,
        "user": actor.user_id,
        "op_id": None,
        "ts": 1000 + state.seq,
        "data": decision.data,
    }
    evolve(state, event)
    return event


def proposal(plan_id: str, version: int, supersedes: list[str] | None = None) -> dict[str, Any]:
    return {
        "plan_id": plan_id,
        "version": version,
        "content_hash": "ab" * 32,
        "proposed_by": "u2",
        "supersedes": supersedes or [],
    }


def test_clients_cannot_publish_or_approve_plans() -> None:
    state = RoomState()
    for kind in ("plan.propose", "plan.decide", "record.snapshot"):
        with pytest.raises(OpRejected) as refused:
            decide(state, OWNER, kind, proposal("p1", 1))
        assert refused.value.code == ErrorCode.FORBIDDEN


def test_versions_decisions_and_supersession_fold_into_the_state() -> None:
    state = RoomState()
    apply(state, SYSTEM, "plan.propose", proposal("p1", 1))
    assert state.plans["p1"]["status"] == "pending" and state.plans["p1"]["superseded_by"] is None
    apply(state, SYSTEM, "plan.decide", {"plan_id": "p1", "status": "approved", "decided_by": "s1", "comment": "ok"})
    assert state.plans["p1"]["status"] == "approved" and state.plans["p1"]["decided_at"] == 1001
    with pytest.raises(OpRejected, match="already approved"):
        decide(state, SYSTEM, "plan.decide", {"plan_id": "p1", "status": "rejected", "decided_by": "s1"})
    with pytest.raises(OpRejected, match="already published"):
        decide(state, SYSTEM, "plan.propose", proposal("p1", 1))
    apply(state, SYSTEM, "plan.propose", proposal("p2", 2, supersedes=["p1", "unknown"]))
    assert state.plans["p1"]["superseded_by"] == "p2"
    snapshot = state.snapshot()
    assert [(p["version"], p["status"]) for p in snapshot["plans"]] == [(1, "approved"), (2, "pending")]
    with pytest.raises(OpRejected, match="status"):
        decide(state, SYSTEM, "plan.decide", {"plan_id": "p2", "status": "maybe", "decided_by": "s1"})
    with pytest.raises(OpRejected, match="no plan version"):
        decide(state, SYSTEM, "plan.decide", {"plan_id": "p9", "status": "approved", "decided_by": "s1"})


def test_snapshots_are_listed_and_archived_rooms_take_no_more() -> None:
    state = RoomState()
    shot = {"id": "s1", "kind": "view3d", "url": "/api/rooms/r/snapshots/s1.png", "created_by": "u1"}
    apply(state, SYSTEM, "record.snapshot", shot)
    assert state.snapshot()["snapshots"][0]["id"] == "s1"
    apply(state, SYSTEM, "room.archive", {})
    with pytest.raises(OpRejected) as refused:
        decide(state, SYSTEM, "record.snapshot", {**shot, "id": "s2"})
    assert refused.value.code == ErrorCode.ROOM_ARCHIVED
