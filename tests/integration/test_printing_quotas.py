"""Per-site print quotas through the real app, on SQLite and PostgreSQL: the defaults come from the
settings, an admin sets a site's own limits, everyone of the site reads its usage, and a print that would
go past a limit is refused (429) with a code naming the limit, the usage and the limit's value; requests
racing for a site's last place get it once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.printing import PrintingServer, add_printer, new_case, small_bone, upload_part, wait_job
from tests.support.world import World


@pytest.fixture
async def live(world: World) -> AsyncIterator[PrintingServer]:
    async with PrintingServer(world.settings) as server:
        yield server


async def set_quota(admin: httpx.AsyncClient, **limits: Any) -> dict[str, Any]:
    response = await admin.patch("/api/sites/site-a/print-quota", json=limits)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def queue(http: httpx.AsyncClient, artifact_id: str) -> httpx.Response:
    return await http.post("/api/print-jobs", json={"artifact_id": artifact_id, "part_class": "anatomical_model"})


async def bone_artifact(engineer: httpx.AsyncClient, tech: httpx.AsyncClient) -> str:
    """A printer (so that queued jobs stay ready, waiting for a technician) and a bone model to print."""
    await add_printer(tech, "fdm-a")
    return await upload_part(engineer, await new_case(engineer), small_bone())


async def test_an_admin_sets_the_sites_limits_and_everyone_of_the_site_reads_its_usage(
    live: PrintingServer, world: World
) -> None:
    async with (
        live.http(world["admin"]) as admin,
        live.http(world["engineer"]) as engineer,
        live.http(world["technician"]) as tech,
        live.http(world["b-admin"]) as stranger,
    ):
        quota = (await engineer.get("/api/sites/site-a/print-quota")).json()
        assert quota["active_jobs"] == {"limit": 200, "used": 0, "source": "default"}  # TRINITY_PRINTING_QUOTA_*
        assert quota["monthly_volume_cm3"] == {"limit": 50_000.0, "used": 0.0, "source": "default"}
        assert quota["timezone"] == "UTC" and len(quota["month"]) == 7

        assert (await tech.patch("/api/sites/site-a/print-quota", json={"active_jobs": 5})).status_code == 403
        assert (await stranger.get("/api/sites/site-a/print-quota")).status_code == 404
        assert (await stranger.patch("/api/sites/site-a/print-quota", json={"active_jobs": 5})).status_code == 404

        mine = await set_quota(admin, active_jobs=5, monthly_volume_cm3=2500.0)
        assert mine["active_jobs"] == {"limit": 5, "used": 0, "source": "site"}
        assert mine["monthly_volume_cm3"] == {"limit": 2500.0, "used": 0.0, "source": "site"}
        assert mine["updated_by"] == world["admin"].id
        back = await set_quota(admin, monthly_volume_cm3=None)  # back to the default; active jobs stays
        assert back["monthly_volume_cm3"]["source"] == "default" and back["active_jobs"]["limit"] == 5
        invalid = await admin.patch("/api/sites/site-a/print-quota", json={"active_jobs": -1})
        assert invalid.status_code == 422

        audit = (await admin.get("/api/admin/audit", params={"action": "print_quota.update"})).json()["rows"]
        assert [(r["target_id"], r["details"]) for r in audit] == [  # newest first
            ("site-a", {"monthly_volume_cm3": None}),
            ("site-a", {"active_jobs": 5, "monthly_volume_cm3": 2500.0}),
        ]


async def test_past_the_active_jobs_limit_a_print_is_refused_naming_the_limit_and_the_usage(
    live: PrintingServer, world: World
) -> None:
    async with (
        live.http(world["admin"]) as admin,
        live.http(world["engineer"]) as engineer,
        live.http(world["technician"]) as tech,
    ):
        artifact_id = await bone_artifact(engineer, tech)
        await set_quota(admin, active_jobs=2)
        first, second = [(await queue(engineer, artifact_id)).json()["id"] for _ in range(2)]
        for job_id in (first, second):  # ready, waiting for a technician to start them: both still active
            await wait_job(engineer, job_id, "ready")

        third = await queue(engineer, artifact_id)
        assert third.status_code == 429, third.text
        error = third.json()["error"]
        assert error["code"] == "print_quota_active_jobs"
        assert error["details"] == {"quota": "active_jobs", "usage": 2, "limit": 2, "site_id": "site-a"}
        assert "site site-a has 2 active print jobs and its limit is 2" in error["message"]
        assert (await engineer.get("/api/sites/site-a/print-quota")).json()["active_jobs"]["used"] == 2

        assert (await engineer.post(f"/api/print-jobs/{first}/cancel")).status_code == 200
        again = await queue(engineer, artifact_id)
        assert again.status_code == 201, again.text
        retried = await tech.post(f"/api/print-jobs/{first}/retry")  # back into a full queue: refused too
        assert retried.status_code == 429 and retried.json()["error"]["code"] == "print_quota_active_jobs"
        assert (await tech.get(f"/api/print-jobs/{first}")).json()["state"] == "cancelled"


async def test_past_the_monthly_volume_a_print_is_refused_and_a_cancelled_one_gives_its_volume_back(
    live: PrintingServer, world: World
) -> None:
    async with live.http(world["admin"]) as admin, live.http(world["engineer"]) as engineer:
        async with live.http(world["technician"]) as tech:
            artifact_id = await bone_artifact(engineer, tech)
        part_cm3 = small_bone().volume / 1000
        await set_quota(admin, monthly_volume_cm3=round(1.5 * part_cm3, 3))
        first = await queue(engineer, artifact_id)
        assert first.status_code == 201 and first.json()["volume_mm3"] == pytest.approx(part_cm3 * 1000)

        second = await queue(engineer, artifact_id)
        assert second.status_code == 429, second.text
        error = second.json()["error"]
        assert error["code"] == "print_quota_monthly_volume"
        details = error["details"]
        assert details["quota"] == "monthly_volume_cm3" and details["limit"] == round(1.5 * part_cm3, 3)
        assert details["usage"] == pytest.approx(part_cm3, abs=1e-3)
        assert details["requested"] == pytest.approx(part_cm3, abs=1e-3)
        usage = (await engineer.get("/api/sites/site-a/print-quota")).json()["monthly_volume_cm3"]
        assert details["month"] == (await engineer.get("/api/sites/site-a/print-quota")).json()["month"]
        assert usage["used"] == pytest.approx(part_cm3, abs=1e-3)

        assert (await engineer.post(f"/api/print-jobs/{first.json()['id']}/cancel")).status_code == 200
        assert (await queue(engineer, artifact_id)).status_code == 201  # never started: its volume came back


async def test_requests_racing_for_the_last_places_get_each_place_once(live: PrintingServer, world: World) -> None:
    async with (
        live.http(world["admin"]) as admin,
        live.http(world["engineer"]) as engineer,
        live.http(world["technician"]) as tech,
    ):
        artifact_id = await bone_artifact(engineer, tech)
        await set_quota(admin, active_jobs=2)
        answers = await asyncio.gather(*(queue(engineer, artifact_id) for _ in range(8)))
        assert sorted(r.status_code for r in answers) == [201, 201] + [429] * 6
        jobs = (await engineer.get("/api/print-jobs")).json()
        assert len(jobs) == 2
