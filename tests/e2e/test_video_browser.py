"""End-to-end video: two users in two Chromium contexts, fake camera and microphone, see each other.

Needs web/dist (`make web`), Debian's Chromium and the Python `playwright` package (never `playwright
install`). Media stays on the machine: the server offers only 127.0.0.1 as its candidate, and Chromium
is allowed loopback candidates.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import playwright.sync_api as playwright_sync
import pytest

from tests.e2e.test_room_browser import CHROMIUM, CHROMIUM_ARGS, DIST, ENGINEER, SURGEON, _open, _token
from tests.support.services import missing
from tests.support.video_app import VideoServerProcess

pytestmark = pytest.mark.browser

MEDIA_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
]
# A remote <video> of the given user that has a picture and whose clock moves.
PLAYING = """async (user) => {
    const v = document.querySelector(`[data-testid=video-remote][data-user="${user}"]`);
    if (!v || v.videoWidth === 0) return null;
    const t0 = v.currentTime;
    await new Promise((r) => setTimeout(r, 600));
    return { width: v.videoWidth, height: v.videoHeight, t0, t1: v.currentTime, paused: v.paused };
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("trinity-video-e2e")
    env = {"TRINITY_DATA_DIR": str(data), "TRINITY_DEMO": "true", "TRINITY_VIDEO_HOST_ADDRESSES": "127.0.0.1"}
    process = VideoServerProcess(env, data / "server.log").start()
    try:
        yield process.base_url
    finally:
        process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not DIST.exists():
        missing("the built web client (web/dist)", "run `make web` (cd web && npm ci && npm run build)")
    if not Path(CHROMIUM).exists():
        missing(f"Chromium at {CHROMIUM}", "apt-get install -y --no-install-recommends chromium")
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *MEDIA_ARGS])
        yield b
        b.close()


def _user_id(base: str, who: tuple[str, str]) -> str:
    r = httpx.get(f"{base}/api/me", headers={"Authorization": f"Bearer {_token(base, who)}"})
    r.raise_for_status()
    return str(r.json()["id"])


def test_two_users_see_each_others_video_playing(browser: Any, server: str) -> None:
    owner = {"Authorization": f"Bearer {_token(server, SURGEON)}"}
    room = httpx.post(f"{server}/api/rooms", json={"title": "video e2e"}, headers=owner).json()
    invite = httpx.post(f"{server}/api/rooms/{room['id']}/invites", json={}, headers=owner).json()
    guest = {"Authorization": f"Bearer {_token(server, ENGINEER)}"}
    httpx.post(f"{server}/api/invites/{invite['token']}/accept", headers=guest).raise_for_status()
    ids = {who: _user_id(server, who) for who in (SURGEON, ENGINEER)}

    a = _open(browser, server, SURGEON, room["id"])
    b = _open(browser, server, ENGINEER, room["id"])
    try:
        for user in (a, b):
            user.page.click("[data-testid=video-join]")
        for user in (a, b):
            user.page.wait_for_selector("[data-testid=video-state][data-state=live]", timeout=20_000)
        for viewer, other in ((a, ids[ENGINEER]), (b, ids[SURGEON])):
            viewer.page.wait_for_function(
                """(user) => { const v = document.querySelector(`[data-testid=video-remote][data-user="${user}"]`);
                              return !!v && v.videoWidth > 0; }""",
                arg=other,
                timeout=20_000,
            )
            playing = viewer.page.evaluate(PLAYING, other)
            assert playing is not None and playing["width"] > 0 and playing["height"] > 0
            assert playing["t1"] > playing["t0"] and not playing["paused"]  # the picture moves
        # The recording indicator and consent are on every client, and agree.
        for user in (a, b):
            user.page.check("[data-testid=recording-consent]")
        a.page.wait_for_selector("[data-testid=recording-start]:not([disabled])", timeout=10_000)
        a.page.click("[data-testid=recording-start]")
        for user in (a, b):
            user.page.wait_for_selector("[data-testid=recording-indicator]:visible", timeout=10_000)
        a.page.click("[data-testid=recording-stop]")
        b.page.wait_for_selector("[data-testid=recording-indicator]", state="hidden", timeout=10_000)
        for user in (a, b):
            assert not user.errors, user.errors
    finally:
        for user in (a, b):
            user.context.close()
