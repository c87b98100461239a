"""`trinity room ...`: talk to a running server's room with the Python client (watch, chat)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys

import httpx
import orjson

from server.rooms.client import RoomClient


def _login(url: str, username: str) -> str:
    password = os.environ.get("TRINITY_PASSWORD") or getpass.getpass(f"password for {username}: ")
    response = httpx.post(
        f"{url.rstrip('/')}/api/auth/login", json={"username": username, "password": password}, timeout=10
    )
    if response.status_code != 200:
        raise SystemExit(f"login failed: {response.json().get('error', {}).get('message', response.text)}")
    return str(response.json()["access_token"])


async def _watch(url: str, room_id: str, token: str, limit: int | None) -> None:
    async with RoomClient(url, room_id, token) as room:
        count = 0
        async for frame in room.frames():
            sys.stdout.write(orjson.dumps(frame).decode() + "\n")
            sys.stdout.flush()
            count += 1
            if limit is not None and count >= limit:
                return


async def _chat(url: str, room_id: str, token: str, text: str) -> int:
    async with RoomClient(url, room_id, token) as room:
        return await room.send_op("chat.send", {"text": text})


def cmd_room(args: argparse.Namespace) -> int:
    token = _login(args.url, args.username)
    if args.room_command == "watch":
        asyncio.run(_watch(args.url, args.room, token, args.limit))
    else:
        seq = asyncio.run(_chat(args.url, args.room, token, args.text))
        print(f"stored as #{seq}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    room = sub.add_parser("room", help="a running server's room (uses the Python client)")
    room_sub = room.add_subparsers(dest="room_command", required=True)
    for name, help_text in (("watch", "print the room's frames as JSON lines"), ("chat", "send a chat message")):
        p = room_sub.add_parser(name, help=help_text)
        p.add_argument("room")
        p.add_argument("--url", default="http://127.0.0.1:8000")
        p.add_argument("--username", required=True, help="password from TRINITY_PASSWORD or a prompt")
        if name == "watch":
            p.add_argument("--limit", type=int, help="stop after this many frames")
        else:
            p.add_argument("text")
        p.set_defaults(fn=lambda args, _settings: cmd_room(args))
