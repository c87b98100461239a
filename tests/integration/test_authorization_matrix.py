"""Every (role, site, endpoint or message) cell of the room authorization matrix, checked live.

Subjects: the room's owner; a participant; an observer member; a user whose account role is observer
(added as participant, so an observer all the same); a same-site non-member; a same-site admin who is
not a member; a user of another site who joined by invite; another site's admin; and nobody.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.rooms.client import RoomClient, RoomClosed, RoomError
from tests.support.world import LiveServer, World, create_room

MEMBERS = {"engineer": "participant", "radiologist": "observer", "observer": "participant", "b-surgeon": "participant"}

# subject -> expected HTTP status per REST action
REST: dict[str, dict[str, int]] = {
    #                 get   members invite add  remove events archive
    "surgeon": dict(get=200, members=200, invite=201, add=201, remove=204, events=200, archive=200),
    "engineer": dict(get=200, members=200, invite=403, add=403, remove=403, events=200, archive=403),
    "radiologist": dict(get=200, members=200, invite=403, add=403, remove=403, events=200, archive=403),
    "observer": dict(get=200, members=200, invite=403, add=403, remove=403, events=200, archive=403),
    "technician": dict(get=404, members=404, invite=404, add=404, remove=404, events=404, archive=404),
    "admin": dict(get=404, members=404, invite=201, add=201, remove=204, events=404, archive=200),
    "b-surgeon": dict(get=200, members=200, invite=403, add=403, remove=403, events=200, archive=403),
    "b-admin": dict(get=404, members=404, invite=404, add=404, remove=404, events=404, archive=404),
    "anonymous": dict(get=401, members=401, invite=401, add=401, remove=401, events=401, archive=401),
}

# subject -> outcome per WebSocket message: "ok", an error code, or a close code for the join
WS: dict[str, dict[str, Any]] = {
    "surgeon": dict(join="ok", annotate="ok", chat="ok", present="ok", camera="ok"),
    "engineer": dict(join="ok", annotate="ok", chat="ok", present="ok", camera="ok"),
    "radiologist": dict(join="ok", annotate="forbidden", chat="ok", present="invalid_op", camera="not_presenter"),
    "observer": dict(join="ok", annotate="forbidden", chat="ok", present="invalid_op", camera="not_presenter"),
    "technician": dict(join=4004),
    "admin": dict(join=4004),
    "b-surgeon": dict(join="ok", annotate="ok", chat="ok", present="ok", camera="ok"),
    "b-admin": dict(join=4004),
    "anonymous": dict(join=4001),
}


def headers(world: World, subject: str) -> dict[str, str]:
    return {} if subject == "anonymous" else world[subject].headers


def token(world: World, subject: str) -> str:
    return "" if subject == "anonymous" else world[subject].token


@pytest.mark.parametrize("subject", list(REST))
async def test_rest_room_authorization(world: World, live: LiveServer, subject: str) -> None:
    room = create_room(world, members=MEMBERS)
    expected = REST[subject]
    async with live.http() as http:
        h = headers(world, subject)
        got = {
            "get": (await http.get(f"/api/rooms/{room}", headers=h)).status_code,
            "members": (await http.get(f"/api/rooms/{room}/members", headers=h)).status_code,
            "invite": (await http.post(f"/api/rooms/{room}/invites", json={"role": "observer"}, headers=h)).status_code,
            "add": (
                await http.post(
                    f"/api/rooms/{room}/members",
                    json={"user_id": world["technician"].id, "role": "observer"},
                    headers=h,
                )
            ).status_code,
            "remove": (await http.delete(f"/api/rooms/{room}/members/{world['engineer'].id}", headers=h)).status_code,
            "events": (await http.get(f"/api/rooms/{room}/events", headers=h)).status_code,
            "archive": (await http.post(f"/api/rooms/{room}/archive", headers=h)).status_code,
        }
        assert got == expected
        listed = (
            (await http.get("/api/rooms", params={"archived": "true"}, headers=h)).json()
            if subject != "anonymous"
            else []
        )
        assert (room in [r["id"] for r in listed]) == (expected["get"] == 200)


@pytest.mark.parametrize("subject", list(WS))
async def test_websocket_room_authorization(world: World, live: LiveServer, subject: str) -> None:
    room = create_room(world, members=MEMBERS)
    expected = WS[subject]
    client = RoomClient(live.base_url, room, token(world, subject), reconnect=False)
    if expected["join"] != "ok":
        with pytest.raises(RoomClosed) as info:
            await client.connect()
        assert info.value.code == expected["join"]
        return

    async def outcome(kind: str, data: dict[str, Any]) -> str:
        try:
            await client.send_op(kind, data)
            return "ok"
        except RoomError as exc:
            return str(exc.code)

    await client.connect()
    try:
        got = {
            "join": "ok",
            "annotate": await outcome(
                "annotation.create", {"id": f"x-{subject}", "kind": "marker", "data": {"point": [1, 2, 3]}}
            ),
            "chat": await outcome("chat.send", {"text": f"hello from {subject}"}),
            "present": await outcome("presenter.take", {}),
        }
        client.drain()
        await client.send({"type": "camera", "position": [0, 0, 500], "target": [0, 0, 0]})
        await client.send({"type": "ping", "t": 1})
        reply = await client.wait_for(lambda f: f["type"] in ("error", "pong"))
        got["camera"] = reply["code"] if reply["type"] == "error" else "ok"
        assert got == expected
    finally:
        await client.close()


async def test_cross_site_users_join_only_by_invite(world: World, live: LiveServer) -> None:
    room = create_room(world)
    async with live.http(world["surgeon"]) as owner, live.http(world["b-surgeon"]) as guest:
        refused = await owner.post(
            f"/api/rooms/{room}/members", json={"user_id": world["b-surgeon"].id, "role": "participant"}
        )
        assert refused.status_code == 403 and "invite" in refused.json()["error"]["message"]
        invite = (
            await owner.post(
                f"/api/rooms/{room}/invites", json={"role": "observer", "expires_in_s": 600, "max_uses": 1}
            )
        ).json()
        assert invite["url"].endswith(invite["token"])
        joined = await guest.post(f"/api/invites/{invite['token']}/accept")
        assert joined.status_code == 200 and joined.json()["role"] == "observer"
        assert (await guest.post(f"/api/invites/{invite['token']}/accept")).status_code == 200  # idempotent
        async with live.http(world["b-admin"]) as other:
            assert (await other.post(f"/api/invites/{invite['token']}/accept")).status_code == 410  # used up
        expired = (
            await owner.post(f"/api/rooms/{room}/invites", json={"role": "participant", "expires_in_s": 5})
        ).json()
        assert expired["error"]["code"] == "invalid"
        revoked = (await owner.post(f"/api/rooms/{room}/invites", json={"role": "participant"})).json()
        assert (await owner.delete(f"/api/rooms/{room}/invites/{revoked['id']}")).status_code == 204
        async with live.http(world["b-admin"]) as other:
            assert (await other.post(f"/api/invites/{revoked['token']}/accept")).status_code == 410
            assert (await other.post("/api/invites/not-a-token/accept")).status_code == 404


async def test_a_removed_member_is_disconnected_at_once(world_sqlite: World, live_sqlite: LiveServer) -> None:
    world, live = world_sqlite, live_sqlite
    room = create_room(world, members={"engineer": "participant"})
    async with RoomClient(live.base_url, room, world["surgeon"].token), live.http(world["surgeon"]) as owner:
        kicked = RoomClient(live.base_url, room, world["engineer"].token)
        await kicked.connect()
        assert (await owner.delete(f"/api/rooms/{room}/members/{world['engineer'].id}")).status_code == 204
        for _ in range(100):
            if kicked._fatal is not None:
                break
            await asyncio.sleep(0.05)
        assert isinstance(kicked._fatal, RoomClosed) and kicked._fatal.code == 4003
        with pytest.raises(RoomClosed):
            await RoomClient(live.base_url, room, world["engineer"].token, reconnect=False).connect()
        await kicked.close()
