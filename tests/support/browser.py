"""What the browser end-to-end tests share: Chromium's flags, the demo users, logging in through the UI and
creating rooms over REST. The fixtures that start the server and the browser are in tests/e2e/conftest.py.

Debian's Chromium (/usr/bin/chromium, or TRINITY_CHROMIUM) is driven by the Python ``playwright``
package; never ``playwright install``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.process import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "web" / "dist" / "index.html"
CHROMIUM = os.environ.get("TRINITY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]
# The server runs with room limits other than the defaults, so the tests show that the client paces and
# sizes its frames by the `limits` the server announces, not by constants of its own.
LIMITS = {"rate_per_s": 40, "burst": 40, "max_message_bytes": 48_000, "pointer_max_hz": 20, "camera_max_hz": 30}
LIMITS_ENV = {
    "TRINITY_WS_RATE_PER_S": str(LIMITS["rate_per_s"]),
    "TRINITY_WS_RATE_BURST": str(LIMITS["burst"]),
    "TRINITY_WS_MAX_MESSAGE_BYTES": str(LIMITS["max_message_bytes"]),
}
SURGEON = ("surgeon", "surgeon-demo-pass")
ENGINEER = ("engineer", "engineer-demo-pass")

Page = Any  # playwright.sync_api.Page


@dataclass
class User:
    page: Page
    context: Any
    errors: list[str]


@contextmanager
def demo_server(data: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`trinity serve --demo` in a subprocess with its data in `data` and the test LIMITS (plus `env`);
    yields its base URL."""
    process = ServerProcess(
        {**LIMITS_ENV, "TRINITY_DATA_DIR": str(data), "TRINITY_DEMO": "true", **(env or {})}, data / "server.log"
    )
    process.start()
    try:
        yield process.base_url
    finally:
        process.stop()


def token(base: str, who: tuple[str, str]) -> str:
    r = httpx.post(f"{base}/api/auth/login", json={"username": who[0], "password": who[1]})
    r.raise_for_status()
    return str(r.json()["access_token"])


def auth(base: str, who: tuple[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(base, who)}"}


def create_room(base: str, title: str, case_id: str | None = None) -> str:
    """A room owned by the surgeon (showing `case_id` if given); the engineer joins through an invite."""
    owner = auth(base, SURGEON)
    body: dict[str, Any] = {"title": title, **({"case_id": case_id} if case_id else {})}
    response = httpx.post(f"{base}/api/rooms", json=body, headers=owner)
    response.raise_for_status()
    room = response.json()
    invite = httpx.post(f"{base}/api/rooms/{room['id']}/invites", json={}, headers=owner).json()
    httpx.post(f"{base}/api/invites/{invite['token']}/accept", headers=auth(base, ENGINEER)).raise_for_status()
    return str(room["id"])


def open_user(
    browser: Any, server: str, who: tuple[str, str], room: str, viewport: dict[str, int] | None = None
) -> User:
    """A fresh browser context that logs in through the login page and lands in the room."""
    context = browser.new_context(viewport=viewport or {"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server}/#/rooms/{room}")  # not logged in: the app sends us to login and back
    page.fill("[data-testid=login-username]", who[0])
    page.fill("[data-testid=login-password]", who[1])
    page.click("[data-testid=login-submit]")
    wait_online(page)
    return User(page, context, errors)


def open_pair(browser: Any, server: str, room: str, opened: list[User]) -> tuple[User, User]:
    """The surgeon (A) and the engineer (B) in the room at 1280 by 800, each in a fresh context, both added
    to `opened` (the `users` fixture closes them)."""
    a = open_user(browser, server, SURGEON, room)
    opened.append(a)
    b = open_user(browser, server, ENGINEER, room)
    opened.append(b)
    return a, b


def wait_online(page: Page, timeout: float = 10_000) -> None:
    page.wait_for_selector("[data-testid=connection-status].online", timeout=timeout)


def canvas_point(page: Page, fx: float, fy: float) -> tuple[float, float]:
    """Page coordinates of a point of the 3D view given as fractions of its width and height."""
    box = page.locator("[data-testid=viewport-canvas]").bounding_box()
    return box["x"] + box["width"] * fx, box["y"] + box["height"] * fy


def click_surface(page: Page, fx: float, fy: float) -> None:
    x, y = canvas_point(page, fx, fy)
    page.mouse.click(x, y)


def close_users(*users: User) -> None:
    """Close every context; a page error in any of them fails the test."""
    for u in users:
        u.context.close()
    for u in users:
        assert not u.errors, u.errors
