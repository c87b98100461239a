"""Alliance administration: roles, the site's users (role, deactivation signs out), per-site storage
quotas (set by the coordinating site when one is configured, enforced on uploads), invitations."""

from __future__ import annotations

from server.record.config import RecordConfig
from tests.support.record import FAST, RecordServer, data_url, png, room_with_case
from tests.support.world import World


async def test_users_roles_and_invitations(world_sqlite: World) -> None:
    world = world_sqlite
    async with RecordServer(world.settings) as live, live.http(world["admin"]) as admin:
        assert {r["role"] for r in (await admin.get("/api/admin/roles")).json()} >= {"surgeon", "admin", "observer"}
        async with live.http(world["engineer"]) as engineer:
            assert (await engineer.get("/api/admin/users")).status_code == 403
            promoted = await admin.patch(f"/api/admin/users/{world['engineer'].id}", json={"role": "radiologist"})
            assert promoted.json()["role"] == "radiologist"
            assert (
                await admin.patch(f"/api/admin/users/{world['engineer'].id}", json={"role": "pilot"})
            ).status_code == 422
            assert (await engineer.get("/api/me")).status_code == 200
            off = await admin.patch(f"/api/admin/users/{world['engineer'].id}", json={"active": False})
            assert off.json()["active"] is False
            assert (await engineer.get("/api/me")).status_code == 401  # signed out everywhere at once
        listed = {u["username"]: u for u in (await admin.get("/api/admin/users")).json()}
        assert listed["engineer"]["active"] is False and "b-surgeon" not in listed
        assert (await admin.patch(f"/api/admin/users/{world['admin'].id}", json={"active": False})).status_code == 409
        assert (
            await admin.patch(f"/api/admin/users/{world['b-surgeon'].id}", json={"role": "observer"})
        ).status_code == 404

        async with live.http(world["surgeon"]) as surgeon:
            _, room_id = await room_with_case(surgeon, world, "ADMIN-001")  # invites and accepts b-surgeon
            await surgeon.post(f"/api/rooms/{room_id}/invites", json={"role": "observer", "max_uses": 3})
        overview = (await admin.get("/api/admin/invites")).json()
        assert [(i["room_id"], i["role"], i["max_uses"]) for i in overview["invites"]] == [(room_id, "observer", 3)]
        assert [(m["display_name"], m["site_id"]) for m in overview["cross_site_members"]] == [("B-Surgeon", "site-b")]


async def test_storage_quotas_are_set_by_the_coordinating_site_and_enforced(world_sqlite: World) -> None:
    world = world_sqlite
    config = RecordConfig(**{**FAST.__dict__, "alliance_site_id": "site-b"})
    async with RecordServer(world.settings, config) as live, live.http(world["surgeon"]) as surgeon:
        _, room_id = await room_with_case(surgeon, world, "QUOTA-001")
        snap = {"image": data_url(png(32, 32)), "camera": {"position": [1, 1, 1], "target": [0, 0, 0]}}
        assert (await surgeon.post(f"/api/rooms/{room_id}/snapshots", json=snap)).status_code == 201
        async with live.http(world["admin"]) as admin, live.http(world["b-admin"]) as coordinator:
            refused = await admin.patch("/api/admin/sites/site-a", json={"storage_quota_bytes": 10})
            assert refused.status_code == 403
            assert (
                await admin.patch("/api/admin/sites/site-a", json={"name": "Hospital A (North)"})
            ).status_code == 200
            sites = {s["id"]: s for s in (await coordinator.get("/api/admin/sites")).json()}
            used = sites["site-a"]["used_bytes"]
            assert used > 0 and sites["site-a"]["name"] == "Hospital A (North)"
            limited = await coordinator.patch("/api/admin/sites/site-a", json={"storage_quota_bytes": used + 10})
            assert limited.json()["storage_quota_bytes"] == used + 10
            bigger = {**snap, "image": data_url(png(300, 300, (9, 99, 199)))}
            full = await surgeon.post(f"/api/rooms/{room_id}/snapshots", json=bigger)
            assert full.status_code == 507 and full.json()["error"]["code"] == "quota_exceeded"
            assert (
                await coordinator.patch("/api/admin/sites/site-a", json={"storage_quota_bytes": None})
            ).status_code == 200
            assert (await surgeon.post(f"/api/rooms/{room_id}/snapshots", json=bigger)).status_code == 201
