"""REST: a room's plan versions. Propose (any contributor), approve or reject (a surgeon of the room,
confirming with their password on that request), list. Every change is audited, shown in the room and
announced by webhook and e-mail."""

from __future__ import annotations

import copy
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlmodel import Session

from server.core.errors import Forbidden, Invalid
from server.deps import CurrentPrincipal, client_ip
from server.record import plans
from server.record.announce import plan_notification
from server.record.edge import config_of, in_db, notify, publish, require_contributor
from server.record.models import PlanVersion
from server.record.reauth import confirm_password
from server.rooms import repository as rooms

router = APIRouter(prefix="/api", tags=["record"])
DECIDING_ROLE = "surgeon"


class PlanPropose(BaseModel):
    artifact_ids: list[str] = Field(default_factory=list, max_length=plans.MAX_PLAN_ARTIFACTS)
    notes: str = Field(default="", max_length=2000)
    # Which of the room's annotations the plan holds; None: all of them.
    annotation_ids: list[str] | None = Field(default=None, max_length=500)


class PlanDecide(BaseModel):
    decision: Literal["approved", "rejected"]
    comment: str = Field(default="", max_length=2000)
    password: str = Field(min_length=1, max_length=1000)


def _published(plan: PlanVersion, superseded: list[str]) -> dict[str, Any]:
    return {
        "plan_id": plan.id,
        "version": plan.version,
        "content_hash": plan.content_hash,
        "proposed_by": plan.proposed_by,
        "notes": plan.content.get("notes", ""),
        "artifacts": [
            {k: a[k] for k in ("artifact_id", "name", "kind", "version")} for a in plan.content.get("artifacts", [])
        ],
        "annotation_ids": [a["id"] for a in plan.content.get("annotations", [])],
        "supersedes": superseded,
    }


@router.get("/rooms/{room_id}/plans")
async def list_plans(room_id: str, principal: CurrentPrincipal, request: Request) -> list[dict[str, Any]]:
    def run(db: Session) -> list[dict[str, Any]]:
        rooms.require_member(db, room_id, principal)
        return [plans.public(p, plans.decisions_of(db, p.id)) for p in plans.plans_of_room(db, room_id)]

    return await in_db(request, run, write=False)


@router.get("/rooms/{room_id}/plans/{plan_id}")
async def get_plan(room_id: str, plan_id: str, principal: CurrentPrincipal, request: Request) -> dict[str, Any]:
    def run(db: Session) -> dict[str, Any]:
        rooms.require_member(db, room_id, principal)
        plan = plans.get_plan(db, room_id, plan_id)
        return plans.public(plan, plans.decisions_of(db, plan.id))

    return await in_db(request, run, write=False)


@router.post("/rooms/{room_id}/plans", status_code=201)
async def propose(room_id: str, body: PlanPropose, principal: CurrentPrincipal, request: Request) -> dict[str, Any]:
    await in_db(request, lambda db: require_contributor(db, room_id, principal), write=False)
    hub = await request.app.state.hubs.get(room_id)
    # The annotations as everyone sees them now, measurements included (computed by the server).
    live = {k: a for k, a in hub.state.annotations.items() if not a.get("deleted")}
    wanted = list(live) if body.annotation_ids is None else body.annotation_ids
    missing = [a for a in wanted if a not in live]
    if missing:
        raise Invalid(f"no annotation {missing[0]!r} in this room")
    annotations = [copy.deepcopy(live[a]) for a in wanted]
    room_seq = hub.state.seq

    def run(db: Session) -> tuple[PlanVersion, list[str]]:
        room, _ = require_contributor(db, room_id, principal)
        return plans.propose(
            db,
            principal,
            room,
            annotations=annotations,
            artifact_ids=body.artifact_ids,
            notes=body.notes,
            room_seq=room_seq,
            ip=client_ip(request),
        )

    plan, superseded = await in_db(request, run)
    await publish(request, room_id, "plan.propose", _published(plan, superseded), f"plan:{plan.id}:proposed")
    notify(request, await in_db(request, lambda db: plan_notification(db, config_of(request), plan), write=False))
    return plans.public(plan, [])


@router.post("/rooms/{room_id}/plans/{plan_id}/decision")
async def decide(
    room_id: str, plan_id: str, body: PlanDecide, principal: CurrentPrincipal, request: Request
) -> dict[str, Any]:
    ip = client_ip(request)

    def check(db: Session) -> None:
        require_contributor(db, room_id, principal)
        if principal.role != DECIDING_ROLE:
            raise Forbidden("only the room's surgeons approve or reject a plan")
        plans.get_plan(db, room_id, plan_id)
        # argon2 on a reader thread: never holds up the writer thread that room ops go through.
        confirm_password(db, principal, body.password, config=config_of(request), action="plan.decide", ip=ip)

    await in_db(request, check, write=False)

    def run(db: Session) -> PlanVersion:
        plan = plans.get_plan(db, room_id, plan_id)
        return plans.decide(db, principal, plan, decision=body.decision, comment=body.comment, ip=ip)

    plan = await in_db(request, run)
    payload = {"plan_id": plan.id, "status": plan.status, "decided_by": principal.user_id, "comment": body.comment}
    await publish(request, room_id, "plan.decide", payload, f"plan:{plan.id}:decided")
    notify(request, await in_db(request, lambda db: plan_notification(db, config_of(request), plan), write=False))
    return plans.public(plan, await in_db(request, lambda db: plans.decisions_of(db, plan.id), write=False))
