"""Jobs: progress into the room, results, failures, cancel, idempotency, and surviving a crash."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from server.rooms.client import RoomClient
from tests.support.process import ServerProcess
from tests.support.world import LiveServer, World, create_room


async def test_job_progress_reaches_the_room_and_ends_with_its_result(world: World, live: LiveServer) -> None:
    room = create_room(world, members={"engineer": "participant"})
    async with RoomClient(live.base_url, room, world["engineer"].token) as watcher, live.http(world["surgeon"]) as http:
        job = (
            await http.post(
                f"/api/rooms/{room}/jobs", json={"kind": "selftest.countdown", "params": {"steps": 4, "delay_s": 0.3}}
            )
        ).json()
        assert job["state"] == "queued"
        frames = []
        while not frames or frames[-1]["state"] not in ("succeeded", "failed"):
            frames.append(await watcher.wait_for(lambda f: f["type"] == "job" and f["id"] == job["id"], timeout=30))
        states = [f["state"] for f in frames]
        assert states[0] == "queued" and "running" in states and states[-1] == "succeeded"
        progress = [f["progress"] for f in frames if f["state"] == "running"]
        assert progress == sorted(progress) and any(0 < p < 1 for p in progress)
        assert frames[-1]["result"] == {"steps": 4}
        stored = (await http.get(f"/api/jobs/{job['id']}")).json()
        assert (
            stored["state"] == "succeeded"
            and stored["attempts"] == 1
            and stored["timings"]["finished_ms"] >= stored["timings"]["started_ms"]
        )
        listed = (await http.get(f"/api/rooms/{room}/jobs")).json()
        assert [j["id"] for j in listed] == [job["id"]]


async def test_failing_job_reports_its_error(world_sqlite: World, live_sqlite: LiveServer) -> None:
    world, live = world_sqlite, live_sqlite
    room = create_room(world)
    async with live.http(world["surgeon"]) as http:
        job = (
            await http.post(
                f"/api/rooms/{room}/jobs",
                json={"kind": "selftest.countdown", "params": {"steps": 3, "delay_s": 0.05, "fail_at": 1}},
            )
        ).json()
        for _ in range(200):
            view = (await http.get(f"/api/jobs/{job['id']}")).json()
            if view["state"] in ("succeeded", "failed"):
                break
            await asyncio.sleep(0.05)
        assert view["state"] == "failed" and "asked to fail at step 1" in view["error"]


async def test_cancelled_job_stops_within_five_seconds(world_sqlite: World, live_sqlite: LiveServer) -> None:
    world, live = world_sqlite, live_sqlite
    room = create_room(world, members={"engineer": "participant", "observer": "participant"})
    async with live.http(world["surgeon"]) as http:
        job = (
            await http.post(
                f"/api/rooms/{room}/jobs", json={"kind": "selftest.countdown", "params": {"steps": 100, "delay_s": 1}}
            )
        ).json()
        for _ in range(100):
            if (await http.get(f"/api/jobs/{job['id']}")).json()["state"] == "running":
                break
            await asyncio.sleep(0.05)
        async with live.http(world["engineer"]) as other:
            assert (await other.post(f"/api/jobs/{job['id']}/cancel")).status_code == 403
        started = time.monotonic()
        assert (await http.post(f"/api/jobs/{job['id']}/cancel")).status_code == 200
        while (await http.get(f"/api/jobs/{job['id']}")).json()["state"] != "cancelled":
            assert time.monotonic() - started < 5
            await asyncio.sleep(0.05)
        assert (await http.post(f"/api/jobs/{job['id']}/cancel")).json()["error"]["code"] == "conflict"
        async with live.http(world["observer"]) as watcher:
            refused = await watcher.post(f"/api/rooms/{room}/jobs", json={"kind": "selftest.countdown"})
            assert refused.status_code == 403
        unknown = await http.post(f"/api/rooms/{room}/jobs", json={"kind": "rm -rf"})
        assert unknown.status_code == 422 and "rm -rf" in unknown.json()["error"]["message"]


async def test_same_idempotency_key_gives_the_same_job(world_sqlite: World, live_sqlite: LiveServer) -> None:
    world, live = world_sqlite, live_sqlite
    room = create_room(world)
    async with live.http(world["surgeon"]) as http:
        body = {"kind": "selftest.countdown", "params": {"steps": 1, "delay_s": 0}, "idempotency_key": "cut-42"}
        first, second = await asyncio.gather(
            http.post(f"/api/rooms/{room}/jobs", json=body), http.post(f"/api/rooms/{room}/jobs", json=body)
        )
        assert first.json()["id"] == second.json()["id"]
        assert len((await http.get(f"/api/rooms/{room}/jobs")).json()) == 1


def test_job_survives_a_killed_server(world_sqlite: World, tmp_path: Path) -> None:
    world = world_sqlite
    room = create_room(world)
    env = {"TRINITY_DATABASE_URL": world.settings.effective_database_url, "TRINITY_DATA_DIR": str(tmp_path)}
    server = ServerProcess(env, tmp_path / "server.log").start()
    try:
        headers = world["surgeon"].headers
        job = httpx.post(
            f"{server.base_url}/api/rooms/{room}/jobs",
            json={"kind": "selftest.countdown", "params": {"steps": 6, "delay_s": 0.5}},
            headers=headers,
        ).json()
        for _ in range(100):
            if httpx.get(f"{server.base_url}/api/jobs/{job['id']}", headers=headers).json()["progress"] > 0:
                break
            time.sleep(0.1)
        server.kill()
        server.start()
        for _ in range(300):
            view = httpx.get(f"{server.base_url}/api/jobs/{job['id']}", headers=headers).json()
            if view["state"] == "succeeded":
                break
            time.sleep(0.1)
        assert view["state"] == "succeeded" and view["attempts"] == 2
    finally:
        server.stop()
