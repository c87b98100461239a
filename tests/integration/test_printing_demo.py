"""The demo fleet `make run` starts with: 20 simulated printers of all five technologies, supervised and
shown on the maker dashboard's snapshot."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from sqlmodel import select

from server.core.db import Database
from server.printing.demo_fleet import seed_demo_fleet
from server.rooms.models import Room
from tests.support.printing import WAIT_S, PrintingServer
from tests.support.world import World


class OfferedCameras:
    """Stands in for the video service: records the printer cameras offered to rooms."""

    def __init__(self) -> None:
        self.offers: list[tuple[str, Any]] = []

    def add_printer_camera(self, room_id: str, camera: Any) -> None:
        self.offers.append((room_id, camera))


async def test_the_demo_fleet_comes_up_idle_with_every_technology(world_sqlite: World) -> None:
    db = Database(world_sqlite.settings)
    with db.session() as session:
        ids = seed_demo_fleet(session, "site-a", speed=600.0, maker_room_owner=world_sqlite["technician"].principal)
        assert seed_demo_fleet(session, "site-a") == ids  # idempotent
        rooms = session.exec(select(Room).where(Room.kind == "maker")).all()
    db.close()
    assert len(ids) == 20 and len(rooms) == 1

    video = OfferedCameras()
    async with PrintingServer(world_sqlite.settings) as live, live.http(world_sqlite["engineer"]) as http:
        live.app.state.video = video
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while True:
            fleet = (await http.get("/api/sites/site-a/fleet")).json()
            if all(p["state"] == "idle" for p in fleet["printers"]):
                break
            assert asyncio.get_running_loop().time() < deadline, [p["state"] for p in fleet["printers"]]
            await asyncio.sleep(0.1)
        assert Counter(p["technology"] for p in fleet["printers"]) == {
            "fdm": 7,
            "sla": 5,
            "metal": 4,
            "ceramic": 2,
            "bio": 2,
        }
        assert all(p["connection"] == {"speed": 600.0} for p in fleet["printers"])
        while len(video.offers) < 20:  # each simulator's camera is offered to the maker room
            assert asyncio.get_running_loop().time() < deadline, len(video.offers)
            await asyncio.sleep(0.1)
        assert {room for room, _ in video.offers} == {rooms[0].id}
        camera = video.offers[0][1]
        assert camera.camera_id.startswith("printer-site-a-") and camera.provider().size[0] > 0
