"""A small alliance for tests: two sites, a user of every role, logged in; and a live server."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from server.accounts import service as accounts
from server.accounts.models import User
from server.app import create_app
from server.core import auth
from server.core.auth import Principal
from server.core.db import Database
from server.core.migrate import upgrade
from server.core.ws_direct import DirectWebSocketProtocol
from server.rooms import repository as rooms
from server.settings import Settings
from tests.support.services import free_port

PASSWORD = "correct horse battery"
ROLES = ("surgeon", "engineer", "radiologist", "technician", "observer", "admin")


@dataclass
class Person:
    user: User
    token: str
    refresh_token: str

    @property
    def id(self) -> str:
        return self.user.id

    @property
    def principal(self) -> Principal:
        return Principal(self.user.id, self.user.site_id, self.user.role, self.user.display_name)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


@dataclass
class World:
    settings: Settings
    people: dict[str, Person] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Person:
        return self.people[name]


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    # Tokens are minted once per session for the seeded template: let them outlive a slow run.
    return Settings(
        database_url=database_url, data_dir=data_dir, log_json=False, access_token_ttl_s=6 * 3600, **overrides
    )


def seed_world(settings: Settings, *, b_roles: tuple[str, ...] = ("surgeon", "admin")) -> World:
    """Sites `site-a` (every role, named by role) and `site-b` (named `b-<role>`)."""
    upgrade(settings.effective_database_url)
    db = Database(settings)
    world = World(settings)
    with db.session() as session:
        accounts.create_site(session, site_id="site-a", name="Hospital A")
        accounts.create_site(session, site_id="site-b", name="Hospital B")
        wanted = [("site-a", role, role) for role in ROLES] + [("site-b", f"b-{role}", role) for role in b_roles]
        for site, name, role in wanted:
            user = accounts.create_user(
                session, site_id=site, username=name, password=PASSWORD, role=role, display_name=name.title()
            )
            pair = auth._open_session(session, settings, user, None)
            world.people[name] = Person(user, pair.access_token, pair.refresh_token)
    db.close()
    return world


def create_room(
    world: World, owner: str = "surgeon", members: dict[str, str] | None = None, kind: str = "consultation"
) -> str:
    """A room owned by `owner`, with members added directly (same site) or via invite (other site)."""
    db = Database(world.settings)
    with db.session() as session:
        room = rooms.create_room(session, world[owner].principal, kind=kind, title="Test room", case_id=None)
        for name, role in (members or {}).items():
            person = world[name]
            if person.user.site_id == room.site_id:
                rooms.add_member(session, world[owner].principal, room.id, person.id, role)
            else:
                _, token = rooms.create_invite(
                    session, world[owner].principal, room.id, role=role, expires_in_s=3600, max_uses=1, ttl_max_s=86400
                )
                rooms.accept_invite(session, person.principal, token)
    db.close()
    return room.id


class LiveServer:
    """The real app under uvicorn on a free loopback port, inside the test's event loop."""

    def __init__(self, settings: Settings, *, direct: bool = True) -> None:
        self.settings = settings
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            ws_max_size=16 * 1024 * 1024,
            ws_per_message_deflate=settings.ws_per_message_deflate,
            # As `trinity serve` runs it; direct=False: plain ASGI, as under any other server.
            ws=DirectWebSocketProtocol if direct else "websockets-sansio",
        )
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LiveServer:
        self._task = asyncio.create_task(self.server.serve())
        for _ in range(500):
            if self.server.started:
                return self
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        raise TimeoutError("server did not start")

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self._task:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)

    def http(self, person: Person | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, headers=person.headers if person else None, timeout=10)
