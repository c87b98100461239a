"""Plans: propose → approve with the surgeon's password on that request; the printing gate refuses a
guide before approval and from a superseded version; everything shows in the room and is audited."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlmodel import col, select

from server.core.audit import AuditEvent
from server.core.db import Database
from server.record.errors import PlanNotApproved
from server.record.plans import require_approved_plan
from server.rooms.client import RoomClient
from tests.support.record import RecordServer, add_artifact, room_with_case
from tests.support.world import PASSWORD, World


@pytest.fixture
async def server(world: World) -> AsyncIterator[RecordServer]:
    async with RecordServer(world.settings) as live:
        yield live


def gate(live: RecordServer, artifact_id: str) -> object:
    db = Database(live.settings)
    try:
        with db.session() as session:
            return require_approved_plan(session, artifact_id)
    finally:
        db.close()


async def test_propose_then_approve_with_reauthentication(world: World, server: RecordServer) -> None:
    live = server
    async with live.http(world["surgeon"]) as surgeon, live.http(world["engineer"]) as engineer:
        case_id, room_id = await room_with_case(surgeon, world)
        bone = add_artifact(
            live,
            case_id=case_id,
            room_id=room_id,
            kind="mesh",
            name="mandible",
            data=b"bone",
            created_by=world["engineer"].id,
        )
        guide = add_artifact(
            live,
            case_id=case_id,
            room_id=room_id,
            kind="guide",
            name="fibula guide",
            data=b"guide-v1",
            inputs=[bone.id],
            created_by=world["engineer"].id,
        )
        with pytest.raises(PlanNotApproved, match="in no plan"):
            gate(live, guide.id)
        assert gate(live, bone.id) is None  # an anatomical model needs no plan

        async with RoomClient(live.base_url, room_id, world["engineer"].token) as client:
            plane = {"point": [0.0, 0.0, 10.0], "normal": [0.0, 0.0, 2.0]}
            await client.send_op("annotation.create", {"id": "cut-1", "kind": "plane", "data": plane, "label": "Cut"})
            dist = {"a": [0.0, 0.0, 0.0], "b": [3.0, 4.0, 0.0]}
            await client.send_op("annotation.create", {"id": "gap", "kind": "distance", "data": dist})
            proposed = await engineer.post(
                f"/api/rooms/{room_id}/plans",
                json={"artifact_ids": [guide.id, bone.id], "notes": "Fibula flap, 3 segments"},
            )
            assert proposed.status_code == 201, proposed.text
            plan = proposed.json()
            assert plan["version"] == 1 and plan["status"] == "pending" and len(plan["content_hash"]) == 64
            assert {a["id"] for a in plan["content"]["annotations"]} == {"cut-1", "gap"}
            measured = next(a for a in plan["content"]["annotations"] if a["id"] == "gap")
            assert measured["data"]["value_mm"] == 5.0  # the server's measurement is what the plan holds
            shown = await client.wait_for(lambda f: f.get("kind") == "plan.proposed")
            assert shown["data"]["plan_id"] == plan["id"] and shown["data"]["status"] == "pending"

            with pytest.raises(PlanNotApproved, match="pending"):
                gate(live, guide.id)
            url = f"/api/rooms/{room_id}/plans/{plan['id']}/decision"
            wrong = await surgeon.post(url, json={"decision": "approved", "password": "not my password"})
            assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "reauthentication_failed"
            by_engineer = await engineer.post(url, json={"decision": "approved", "password": PASSWORD})
            assert by_engineer.status_code == 403 and "surgeons" in by_engineer.json()["error"]["message"]
            async with live.http(world["observer"]) as observer:
                assert (
                    await observer.post(url, json={"decision": "approved", "password": PASSWORD})
                ).status_code == 403
            assert (await engineer.get(f"/api/rooms/{room_id}/plans/{plan['id']}")).json()["status"] == "pending"

            approved = await surgeon.post(
                url, json={"decision": "approved", "comment": "Go ahead", "password": PASSWORD}
            )
            assert approved.status_code == 200, approved.text
            body = approved.json()
            assert body["status"] == "approved" and body["decided_by"] == world["surgeon"].id
            assert body["decisions"][0]["comment"] == "Go ahead"
            decided = await client.wait_for(lambda f: f.get("kind") == "plan.decided")
            assert decided["data"]["status"] == "approved"
            await client.wait_seq(decided["seq"])
            assert client.state.plans[plan["id"]]["status"] == "approved"
            again = await surgeon.post(url, json={"decision": "rejected", "password": PASSWORD})
            assert again.status_code == 409  # decided once
        assert gate(live, guide.id).id == plan["id"]  # type: ignore[attr-defined]

    db = Database(world.settings)
    with db.session() as session:
        actions = [
            e.action
            for e in session.exec(select(AuditEvent).where(AuditEvent.room_id == room_id).order_by(col(AuditEvent.seq)))
        ]
        failed = session.exec(select(AuditEvent).where(AuditEvent.action == "auth.reauth_failed")).all()
    db.close()
    assert "plan.propose" in actions and "plan.approve" in actions
    assert [f.actor_id for f in failed] == [world["surgeon"].id]


async def test_a_new_version_supersedes_and_a_superseded_plan_cannot_be_printed(
    world: World, server: RecordServer
) -> None:
    live = server
    async with live.http(world["surgeon"]) as surgeon:
        case_id, room_id = await room_with_case(surgeon, world, "FEMUR-2026-002")
        guide = add_artifact(
            live,
            case_id=case_id,
            room_id=room_id,
            kind="guide",
            name="drill guide",
            data=b"g1",
            created_by=world["surgeon"].id,
        )
        implant = add_artifact(
            live,
            case_id=case_id,
            room_id=room_id,
            kind="implant",
            name="plate",
            data=b"i1",
            created_by=world["surgeon"].id,
        )
        v1 = (await surgeon.post(f"/api/rooms/{room_id}/plans", json={"artifact_ids": [guide.id]})).json()
        decision = {"decision": "approved", "password": PASSWORD}
        assert (await surgeon.post(f"/api/rooms/{room_id}/plans/{v1['id']}/decision", json=decision)).status_code == 200
        assert gate(live, guide.id).id == v1["id"]  # type: ignore[attr-defined]
        with pytest.raises(PlanNotApproved):
            gate(live, implant.id)  # approved plan, but not in it

        v2 = (await surgeon.post(f"/api/rooms/{room_id}/plans", json={"artifact_ids": [implant.id]})).json()
        assert v2["version"] == 2
        listed = (await surgeon.get(f"/api/rooms/{room_id}/plans")).json()
        assert [(p["version"], p["current"], p["superseded_by"]) for p in listed] == [
            (1, False, v2["id"]),
            (2, True, None),
        ]
        with pytest.raises(PlanNotApproved, match="superseded"):
            gate(live, guide.id)
        late = await surgeon.post(f"/api/rooms/{room_id}/plans/{v1['id']}/decision", json=decision)
        assert late.status_code == 409  # a superseded version cannot be decided either
        rejected = {"decision": "rejected", "comment": "Plate too long", "password": PASSWORD}
        assert (await surgeon.post(f"/api/rooms/{room_id}/plans/{v2['id']}/decision", json=rejected)).status_code == 200
        with pytest.raises(PlanNotApproved, match="rejected"):
            gate(live, implant.id)
        v3 = (await surgeon.post(f"/api/rooms/{room_id}/plans", json={"artifact_ids": [guide.id, implant.id]})).json()
        assert (await surgeon.post(f"/api/rooms/{room_id}/plans/{v3['id']}/decision", json=decision)).status_code == 200
        assert gate(live, guide.id).id == gate(live, implant.id).id == v3["id"]  # type: ignore[attr-defined]

        async with live.http(world["b-admin"]) as stranger:
            assert (await stranger.get(f"/api/rooms/{room_id}/plans")).status_code == 404
        async with live.http(world["observer"]) as observer:
            assert (await observer.post(f"/api/rooms/{room_id}/plans", json={})).status_code == 403
