"""Operations: health, readiness, metrics, JSON logs, request size limits, the audit trail."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from sqlmodel import col, select

from server.core.audit import AuditEvent
from server.core.db import Database, make_engine
from server.core.logs import JsonFormatter, request_context, room_context
from server.rooms.client import RoomClient
from tests.support.world import LiveServer, World, create_room


async def test_health_ready_and_metrics(world_sqlite: World, live_sqlite: LiveServer) -> None:
    world, live = world_sqlite, live_sqlite
    room = create_room(world)
    async with live.http() as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok"}
        async with RoomClient(live.base_url, room, world["surgeon"].token) as client:
            await client.send_op("chat.send", {"text": "metrics please"})
            metrics = (await http.get("/metrics")).text
        assert "trinity_ws_connections 1.0" in metrics
        assert 'trinity_ws_messages_in_total{type="op"} 1.0' in metrics
        assert "trinity_op_latency_seconds_count 1.0" in metrics
        assert "trinity_ws_messages_out_total" in metrics
        response = await http.get("/healthz", headers={"x-request-id": "abc123"})
        assert response.headers["x-request-id"] == "abc123"


async def test_readiness_fails_when_the_database_is_gone(world_sqlite: World, live_sqlite: LiveServer) -> None:
    # Point the app at a database server that is not there.
    live_sqlite.app.state.db.engine = make_engine("postgresql://postgres@127.0.0.1:1/gone")
    async with live_sqlite.http() as http:
        ready = await http.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("error")


async def test_oversized_request_body_is_refused(world_sqlite: World, live_sqlite: LiveServer) -> None:
    async with live_sqlite.http(world_sqlite["surgeon"]) as http:
        response = await http.post(
            "/api/rooms", content=b"{" + b" " * (2 * 1024 * 1024) + b"}", headers={"content-type": "application/json"}
        )
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"


async def test_room_joins_and_leaves_are_audited_with_address(world: World, live: LiveServer) -> None:
    room = create_room(world, members={"engineer": "participant"})
    async with RoomClient(live.base_url, room, world["engineer"].token):
        pass
    db = Database(world.settings)
    with db.session() as session:
        rows = session.exec(select(AuditEvent).where(AuditEvent.room_id == room).order_by(col(AuditEvent.id))).all()
    db.close()
    joins = [r for r in rows if r.action == "room.join"]
    assert (
        joins
        and joins[0].actor_id == world["engineer"].id
        and joins[0].ip == "127.0.0.1"
        and joins[0].details["role"] == "participant"
    )
    for _ in range(50):
        with db.session() as session:
            if session.exec(
                select(AuditEvent).where(AuditEvent.room_id == room, AuditEvent.action == "room.leave")
            ).first():
                break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("room.leave not audited")


def test_json_log_lines_carry_request_and_room_ids() -> None:
    request_context.set("req-1")
    room_context.set("room-9")
    record = logging.LogRecord("trinity", logging.INFO, __file__, 1, "joined %s", ("x",), None)
    line = json.loads(JsonFormatter().format(record))
    assert line == {**line, "level": "INFO", "msg": "joined x", "request_id": "req-1", "room_id": "room-9"}
