"""Notifications: signed webhooks reach a local receiver and verify; e-mail reaches a local SMTP server
(aiosmtpd) started here; a failing receiver is retried; nothing of it blocks or fails the request."""

from __future__ import annotations

import asyncio
import email
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from server.record.config import RecordConfig
from server.record.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from server.record.print_hooks import print_outcome
from tests.support.record import RecordServer, add_artifact, room_with_case, wait_until
from tests.support.services import free_port
from tests.support.world import PASSWORD, World

SECRET = "shared-webhook-secret-for-tests"


@dataclass
class Receiver:
    """A webhook receiver that refuses the first `fail_first` requests with 503."""

    fail_first: int = 0
    calls: int = 0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.calls <= self.fail_first:
            return web.Response(status=503)
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    def events(self) -> list[str]:
        return [orjson.loads(body)["event"] for _, body in self.received]


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hook = Receiver(fail_first=1)
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield hook, f"http://127.0.0.1:{port}/hook"
    await runner.cleanup()


@pytest.fixture
def mailbox() -> Any:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield box, controller.port
    controller.stop()


async def test_plan_and_print_notifications_by_webhook_and_email(
    world_sqlite: World, receiver: tuple[Receiver, str], mailbox: tuple[Mailbox, int]
) -> None:
    world, (hook, hook_url), (box, smtp_port) = world_sqlite, receiver, mailbox
    dead_url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    config = RecordConfig(
        webhook_urls=f"{hook_url},{dead_url}",
        webhook_secret=SECRET,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_starttls=False,
        smtp_from="trinity@hospital-a.test",
        notify_retry_backoff_s=0.05,
        notify_max_attempts=3,
        public_url="https://trinity.hospital-a.test",
    )
    async with RecordServer(world.settings, config) as live, live.http(world["surgeon"]) as surgeon:
        async with live.http(world["admin"]) as admin:
            for name in ("surgeon", "engineer", "b-surgeon", "observer"):
                body = {"email": f"{name}@hospital.test"}
                if world[name].user.site_id == "site-a":
                    assert (await admin.patch(f"/api/admin/users/{world[name].id}", json=body)).status_code == 200
        async with live.http(world["b-admin"]) as b_admin:
            assert (
                await b_admin.patch(
                    f"/api/admin/users/{world['b-surgeon'].id}", json={"email": "b-surgeon@hospital.test"}
                )
            ).status_code == 200
        case_id, room_id = await room_with_case(surgeon, world, "NOTIFY-001")
        guide = add_artifact(
            live,
            case_id=case_id,
            room_id=room_id,
            kind="guide",
            name="guide",
            data=b"g",
            created_by=world["engineer"].id,
        )
        async with live.http(world["engineer"]) as engineer:
            plan = (await engineer.post(f"/api/rooms/{room_id}/plans", json={"artifact_ids": [guide.id]})).json()
        decision = {"decision": "approved", "comment": "ok", "password": PASSWORD}
        assert (
            await surgeon.post(f"/api/rooms/{room_id}/plans/{plan['id']}/decision", json=decision)
        ).status_code == 200
        await print_outcome(live.app, artifact_id=guide.id, print_job_id="pj-7", succeeded=False, detail="nozzle clog")
        notifier = live.app.state.notifier
        await asyncio.wait_for(notifier.idle(), 60)  # a bound for a hung test, not a timing assertion

        assert sorted(hook.events()) == ["plan.approved", "plan.pending", "print.failed"]  # a retry may reorder
        assert hook.calls == 4  # the first request got 503 and was retried
        for headers, body in hook.received:
            assert verify_signature(SECRET, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], body)
            assert not verify_signature("another secret", headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], body)
            assert not verify_signature(SECRET, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], body + b" ")
        pending_body = next(body for _, body in hook.received if orjson.loads(body)["event"] == "plan.pending")
        pending = orjson.loads(pending_body)
        assert pending["case_label"] == "NOTIFY-001" and pending["plan_id"] == plan["id"]
        assert "Doe" not in pending_body.decode()  # de-identified
        assert {channel for _, channel, _ in notifier.failed} == {dead_url}  # given up after retries, only logged

        await wait_until(lambda: len(box.messages) == 3)
        # One delivery task per notification: the three mails may reach the server in any order.
        by_kind = {
            kind: next((to, m) for to, m in box.messages if word in m["Subject"])
            for kind, word in (("pending", "waits for your approval"), ("approved", "approved"), ("failed", "failed"))
        }
        (to_pending, m1), (to_approved, m2), (_, m3) = by_kind["pending"], by_kind["approved"], by_kind["failed"]
        # Waiting for approval goes to the room's surgeons (not the proposing engineer, not observers).
        assert sorted(to_pending) == ["b-surgeon@hospital.test", "surgeon@hospital.test"]
        assert (
            "waits for your approval" in m1["Subject"]
            and "https://trinity.hospital-a.test/#/rooms/" in m1.get_payload()
        )
        assert "approved" in m2["Subject"] and "engineer@hospital.test" in to_approved
        assert "observer@hospital.test" not in to_approved
        assert "failed" in m3["Subject"] and "nozzle clog" in m3.get_payload()
        assert m1["From"] == "trinity@hospital-a.test"


async def test_a_dead_mail_server_never_fails_the_request(world_sqlite: World) -> None:
    world = world_sqlite
    config = RecordConfig(
        smtp_host="127.0.0.1",
        smtp_port=free_port(),
        smtp_starttls=False,
        notify_retry_backoff_s=0.01,
        notify_max_attempts=2,
    )
    async with RecordServer(world.settings, config) as live, live.http(world["surgeon"]) as surgeon:
        async with live.http(world["admin"]) as admin:
            await admin.patch(f"/api/admin/users/{world['surgeon'].id}", json={"email": "s@hospital.test"})
        _, room_id = await room_with_case(surgeon, world, "NOTIFY-002")
        async with live.http(world["engineer"]) as engineer:
            assert (await engineer.post(f"/api/rooms/{room_id}/plans", json={})).status_code == 201
        await asyncio.wait_for(live.app.state.notifier.idle(), 60)
        assert [channel for _, channel, _ in live.app.state.notifier.failed] == ["email"]
