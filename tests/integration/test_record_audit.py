"""The audit trail: hash-chained and append-only in effect: the chain verifies, a modified, a deleted
or a truncated row is detected, concurrent writers never fork the chain; site admins browse their
site's rows with filters and export CSV."""

from __future__ import annotations

import csv
import io
import threading

from sqlalchemy import text

from server.core import audit
from server.core.db import Database
from tests.support.record import RecordServer, room_with_case
from tests.support.world import World


def sql(world: World, statement: str, **params: object) -> None:
    db = Database(world.settings)
    with db.engine.begin() as conn:
        conn.execute(text(statement), params)
    db.close()


def verify(world: World) -> audit.ChainReport:
    db = Database(world.settings)
    with db.session() as session:
        report = audit.verify_chain(session)
    db.close()
    return report


async def test_chain_verifies_and_detects_modified_deleted_and_truncated_rows(world: World) -> None:
    async with RecordServer(world.settings) as live, live.http(world["surgeon"]) as surgeon:
        case_id, _ = await room_with_case(surgeon, world)
        await surgeon.get(f"/api/cases/{case_id}")
        async with live.http(world["admin"]) as admin:
            intact = (await admin.get("/api/admin/audit/verify")).json()
            assert intact["ok"] and intact["rows_checked"] == intact["head_seq"] > 5, intact
            page = (await admin.get("/api/admin/audit", params={"action": "case.open"})).json()["rows"]
            opened = page[0]["seq"]

            sql(world, "UPDATE audit_events SET actor_id = 'someone-else' WHERE seq = :seq", seq=opened)
            modified = (await admin.get("/api/admin/audit/verify")).json()
            assert not modified["ok"]
            assert [(p["problem"], p["seq"]) for p in modified["problems"]] == [("modified", opened)]

            sql(world, "DELETE FROM audit_events WHERE seq = :seq", seq=opened)
            deleted = (await admin.get("/api/admin/audit/verify")).json()
            assert [(p["problem"], p["seq"]) for p in deleted["problems"]] == [("missing", opened + 1)]

    report = verify(world)
    last = report.head_seq
    sql(world, "DELETE FROM audit_events WHERE seq = :seq", seq=last)
    truncated = verify(world)
    assert {p["problem"] for p in truncated.problems} == {"missing", "truncated"}


def test_concurrent_writers_never_fork_the_chain(world: World) -> None:
    """Eight threads with their own sessions append at once (PostgreSQL: real concurrency)."""
    db = Database(world.settings)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(15):
                with db.session() as session:
                    audit.record(session, "test.write", actor_id=f"writer-{n}", i=i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with db.session() as session:
        report = audit.verify_chain(session)
        seqs = [r[0] for r in session.execute(text("SELECT seq FROM audit_events ORDER BY seq"))]
    db.close()
    assert not errors and report.ok, (errors, report.problems)
    assert seqs == list(range(1, len(seqs) + 1))


async def test_site_admins_browse_filter_and_export_their_sites_rows(world_sqlite: World) -> None:
    world = world_sqlite
    async with RecordServer(world.settings) as live, live.http(world["surgeon"]) as surgeon:
        case_id, room_id = await room_with_case(surgeon, world)
        async with live.http(world["b-surgeon"]) as remote:
            assert (await remote.get(f"/api/cases/{case_id}")).status_code == 200  # site B opens site A's case
            assert (await remote.post("/api/auth/logout")).status_code == 204
        async with live.http(world["admin"]) as admin, live.http(world["b-admin"]) as b_admin:
            assert (await surgeon.get("/api/admin/audit")).status_code == 403
            opened = (await admin.get("/api/admin/audit", params={"case_id": case_id, "action": "case.open"})).json()
            assert [r["actor_username"] for r in opened["rows"]] == ["b-surgeon"]
            assert opened["rows"][0]["subject_site_id"] == "site-a" and opened["rows"][0]["actor_site_id"] == "site-b"
            # Site B's admin sees what their surgeon did in site A's case, not site A's own traffic.
            b_rows = (await b_admin.get("/api/admin/audit", params={"limit": 500})).json()["rows"]
            assert {r["action"] for r in b_rows} >= {"case.open", "auth.logout", "room.invite_accept"}
            assert all("site-b" in (r["actor_site_id"], r["subject_site_id"]) for r in b_rows)
            assert not any(r["action"] == "case.create" for r in b_rows)

            rooms = (await admin.get("/api/admin/audit", params={"room_id": room_id, "action": "room.*"})).json()[
                "rows"
            ]
            assert {r["action"] for r in rooms} == {
                "room.create",
                "room.member_add",
                "room.invite_create",
                "room.invite_accept",
            }
            mine = (await admin.get("/api/admin/audit", params={"user_id": world["surgeon"].id, "limit": 2})).json()
            assert len(mine["rows"]) == 2 and mine["next_before_seq"] == mine["rows"][-1]["seq"]
            older = (
                await admin.get(
                    "/api/admin/audit", params={"user_id": world["surgeon"].id, "before_seq": mine["next_before_seq"]}
                )
            ).json()
            assert all(r["seq"] < mine["next_before_seq"] for r in older["rows"]) and older["rows"]
            since = opened["rows"][0]["ts_ms"]
            window = (await admin.get("/api/admin/audit", params={"since_ms": since, "until_ms": since + 1})).json()[
                "rows"
            ]
            assert window and all(r["ts_ms"] == since for r in window)

            exported = await admin.get("/api/admin/audit.csv", params={"case_id": case_id})
            assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(exported.text)))
            assert {r["action"] for r in rows} >= {"case.create", "case.open", "room.create"}
            assert all(r["case_id"] == case_id for r in rows)
            exports = (await admin.get("/api/admin/audit", params={"action": "audit.export"})).json()["rows"]
            assert exports[0]["details"]["filters"]["case_id"] == case_id  # the export itself is audited
