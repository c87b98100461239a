"""Accounts: login, refresh, logout, API keys, users and sites, cases and their identity."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
from sqlmodel import select

from server.core.audit import AuditEvent
from server.core.db import Database
from tests.support.world import PASSWORD, LiveServer, World

ROOT = Path(__file__).resolve().parents[2]


async def test_login_refresh_logout(world: World, live: LiveServer) -> None:
    async with live.http() as http:
        wrong = await http.post("/api/auth/login", json={"username": "surgeon", "password": "nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthenticated"
        unknown = await http.post("/api/auth/login", json={"username": "nobody", "password": PASSWORD})
        assert unknown.status_code == 401
        tokens = (await http.post("/api/auth/login", json={"username": "surgeon", "password": PASSWORD})).json()
        me = await http.get("/api/me", headers={"authorization": f"Bearer {tokens['access_token']}"})
        assert me.json()["username"] == "surgeon" and me.json()["role"] == "surgeon"
        rotated = (await http.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).json()
        assert rotated["access_token"] != tokens["access_token"]
        # The old refresh token and the old session's access token are dead after rotation.
        assert (
            await http.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        ).status_code == 401
        assert (
            await http.get("/api/me", headers={"authorization": f"Bearer {tokens['access_token']}"})
        ).status_code == 401
        fresh = {"authorization": f"Bearer {rotated['access_token']}"}
        assert (await http.post("/api/auth/logout", headers=fresh)).status_code == 204
        after = await http.get("/api/me", headers=fresh)
        assert after.status_code == 401 and "logged out" in after.json()["error"]["message"]
        assert (await http.get("/api/me", headers={"authorization": "Bearer garbage"})).status_code == 401
        assert (await http.get("/api/me")).status_code == 401
    db = Database(world.settings)
    with db.session() as session:
        actions = [e.action for e in session.exec(select(AuditEvent)).all()]
    db.close()
    assert actions.count("auth.login_failed") == 2 and "auth.login" in actions and "auth.logout" in actions


async def test_api_keys_act_as_machines_within_their_site(world_sqlite: World, live_sqlite: LiveServer) -> None:
    world, live = world_sqlite, live_sqlite
    async with live.http(world["admin"]) as admin, live.http(world["surgeon"]) as surgeon:
        assert (await surgeon.post("/api/api-keys", json={"name": "printer-7"})).status_code == 403
        created = (await admin.post("/api/api-keys", json={"name": "OctoPrint host 7", "role": "technician"})).json()
        assert created["token"].startswith("trk_")
        key = {"authorization": f"Bearer {created['token']}"}
        me = (await admin.get("/api/me", headers=key)).json()
        assert me["site_id"] == "site-a" and me["role"] == "technician"
        assert (await admin.post("/api/rooms", json={"title": "x"}, headers=key)).status_code == 403
        assert (await admin.delete(f"/api/api-keys/{created['id']}")).status_code == 204
        assert (await admin.get("/api/me", headers=key)).status_code == 401
        tampered = created["token"][:-2] + "xx"
        assert (await admin.get("/api/me", headers={"authorization": f"Bearer {tampered}"})).status_code == 401


async def test_users_and_sites_are_managed_by_admins(world_sqlite: World, live_sqlite: LiveServer) -> None:
    world, live = world_sqlite, live_sqlite
    async with live.http(world["admin"]) as admin, live.http(world["surgeon"]) as surgeon:
        body = {"username": "new-surgeon", "password": "long enough pw", "role": "surgeon"}
        assert (await surgeon.post("/api/users", json=body)).status_code == 403
        assert (await admin.post("/api/users", json={**body, "site_id": "site-b"})).status_code == 403
        assert (
            (await admin.post("/api/users", json={**body, "password": "short"}))
            .json()["error"]["message"]
            .startswith("password must")
        )
        assert (await admin.post("/api/users", json={**body, "role": "pilot"})).status_code == 422
        assert (await admin.post("/api/users", json=body)).status_code == 201
        assert (await admin.post("/api/users", json=body)).status_code == 409
        assert "new-surgeon" in [u["username"] for u in (await surgeon.get("/api/users")).json()]
        assert (await surgeon.post("/api/sites", json={"id": "site-c", "name": "C"})).status_code == 403
        assert (await admin.post("/api/sites", json={"id": "Site C!", "name": "C"})).status_code == 422
        assert (await admin.post("/api/sites", json={"id": "site-c", "name": "Hospital C"})).status_code == 201
        assert {s["id"] for s in (await surgeon.get("/api/sites")).json()} == {"site-a", "site-b", "site-c"}
        missing_field = await admin.post("/api/users", json={"username": "x"})
        assert missing_field.status_code == 422 and "password" in missing_field.json()["error"]["message"]


async def test_case_identity_never_leaves_the_owning_site(world: World, live: LiveServer) -> None:
    async with (
        live.http(world["surgeon"]) as surgeon,
        live.http(world["b-surgeon"]) as remote,
        live.http(world["engineer"]) as engineer,
    ):
        case = (
            await surgeon.post(
                "/api/cases",
                json={
                    "label": "MAND-2026-014",
                    "patient_name": "Doe^Jane",
                    "patient_id": "MRN123",
                    "birth_date": "19700101",
                },
            )
        ).json()
        assert "patient_name" not in case and case["label"] == "MAND-2026-014"
        assert (await surgeon.get(f"/api/cases/{case['id']}/identity")).json()["patient_name"] == "Doe^Jane"
        assert (await engineer.get(f"/api/cases/{case['id']}/identity")).status_code == 403
        assert (await remote.get(f"/api/cases/{case['id']}")).status_code == 404
        room = (await surgeon.post("/api/rooms", json={"title": "Mandible", "case_id": case["id"]})).json()
        invite = (await surgeon.post(f"/api/rooms/{room['id']}/invites", json={"role": "participant"})).json()
        await remote.post(f"/api/invites/{invite['token']}/accept")
        shared = await remote.get(f"/api/cases/{case['id']}")
        assert shared.status_code == 200 and "Doe" not in shared.text and "MRN123" not in shared.text
        assert (await remote.get(f"/api/cases/{case['id']}/identity")).status_code == 404
        # Other sites cannot attach this case to their rooms.
        other_room = (await remote.post("/api/rooms", json={"title": "theirs"})).json()
        assert (
            await remote.put(f"/api/rooms/{other_room['id']}/case", json={"case_id": case["id"]})
        ).status_code == 404
        assert (await remote.post("/api/rooms", json={"title": "x", "case_id": case["id"]})).status_code == 404
    db = Database(world.settings)
    with db.session() as session:
        opened = [
            (e.actor_id, e.target_id)
            for e in session.exec(select(AuditEvent).where(AuditEvent.action == "case.open")).all()
        ]
        views = [
            e.actor_id for e in session.exec(select(AuditEvent).where(AuditEvent.action == "case.identity_view")).all()
        ]
    db.close()
    assert (world["b-surgeon"].id, case["id"]) in opened and views == [world["surgeon"].id]


def test_cli_bootstraps_an_install(tmp_path: Path) -> None:
    env = {**os.environ, "TRINITY_DATA_DIR": str(tmp_path), "TRINITY_NEW_USER_PASSWORD": "a very good password"}

    def trinity(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "server.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )

    assert trinity("db", "upgrade").returncode == 0
    assert trinity("site", "create", "st-elsewhere", "--name", "St Elsewhere").returncode == 0
    dup = trinity("site", "create", "st-elsewhere")
    assert dup.returncode == 2 and "already exists" in dup.stderr
    made = trinity("user", "create", "dr-who", "--site", "st-elsewhere", "--role", "surgeon", "--name", "Dr Who")
    assert made.returncode == 0, made.stderr
    bad = trinity("user", "create", "dr-no", "--site", "nowhere", "--role", "surgeon")
    assert bad.returncode == 2 and "does not exist" in bad.stderr
    assert trinity("demo").returncode == 0
    assert trinity("demo").returncode == 0  # idempotent
    assert (tmp_path / "trinity.db").exists()
    from server.settings import Settings

    settings = Settings(data_dir=tmp_path)

    db = Database(settings)
    from server.accounts.models import User
    from server.rooms.models import Room

    with db.session() as session:
        assert session.exec(select(User).where(User.username == "dr-who")).one().site_id == "st-elsewhere"
        # the demo's consultation room and the maker room of its simulated fleet, once however often seeded
        assert sorted(r.kind for r in session.exec(select(Room)).all()) == ["consultation", "maker"]
    db.close()


async def test_cli_room_commands_use_the_client_library(world_sqlite: World, live_sqlite: LiveServer) -> None:
    import asyncio

    from tests.support.world import create_room

    room = create_room(world_sqlite)
    env = {**os.environ, "TRINITY_PASSWORD": PASSWORD}
    chat = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "room",
        "chat",
        room,
        "hello from the shell",
        "--url",
        live_sqlite.base_url,
        "--username",
        "surgeon",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(chat.communicate(), 60)
    assert chat.returncode == 0, err.decode()
    assert "stored as #1" in out.decode()
    watch = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "room",
        "watch",
        room,
        "--limit",
        "1",
        "--url",
        live_sqlite.base_url,
        "--username",
        "surgeon",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(watch.communicate(), 60)
    assert watch.returncode == 0, err.decode()
    welcome = orjson.loads(out.decode().splitlines()[0])
    assert welcome["type"] == "welcome" and welcome["snapshot"]["chat"][0]["text"] == "hello from the shell"
