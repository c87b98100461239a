"""End-to-end: the room in Firefox (Debian's Firefox ESR over WebDriver BiDi, tests.support.bidi) beside
Chromium, and on tablet-size screens in both.

In Firefox at 1280 by 800 the surgeon logs in through the login page, opens the demo room from their room
list, the 3D view renders (WebGL, pixels drawn), a marker placed with the keyboard shortcut and a click
reaches the engineer in Chromium within a second, and chat goes both ways. On tablet-size screens
(820 by 1180 portrait, 1180 by 820 landscape) the room fits the window in both browsers: every control
shown without scrolling the page, nothing floating over the 3D view covers something else, and the view
draws. Fixtures in conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from server.demo import DEMO_ROOM_TITLE
from tests.support.bidi import ENTER, BidiSession, Tab
from tests.support.browser import ENGINEER, SURGEON, User, auth, open_user, wait_online
from tests.support.room_layout import LAYOUT_PROBLEMS_JS, OVERLAYS, ROOM_CONTROLS, drawn_fraction

pytestmark = pytest.mark.browser

CANVAS = "[data-testid=viewport-canvas]"
TABLET_SCREENS = [(820, 1180), (1180, 820)]
DRAWN = 0.05  # the placeholder bone covers far more of the view than this; a blank view has none


@pytest.fixture(scope="module")
def demo_room(server: str) -> str:
    rooms = httpx.get(f"{server}/api/rooms", headers=auth(server, SURGEON)).json()
    return str(next(r["id"] for r in rooms if r["title"] == DEMO_ROOM_TITLE))


@pytest.fixture
def tabs(firefox_session: BidiSession) -> Iterator[list[Tab]]:
    """Firefox tabs a test opens; closed afterwards, failing on any uncaught error in a page."""
    opened: list[Tab] = []
    errors_before = len(firefox_session.page_errors())
    yield opened
    for tab in opened:
        tab.close()
    assert firefox_session.page_errors()[errors_before:] == []


def _firefox_user(session: BidiSession, tabs: list[Tab], server: str, room: str, size: tuple[int, int]) -> Tab:
    """The surgeon in a fresh Firefox tab: the login page, then the demo room from their list of rooms."""
    tab = session.new_tab(*size)
    tabs.append(tab)
    tab.goto(f"{server}/#/rooms")
    tab.wait_selector("[data-testid=login-username]")
    tab.type_into("[data-testid=login-username]", SURGEON[0])
    tab.type_into("[data-testid=login-password]", SURGEON[1])
    tab.click("[data-testid=login-submit]")
    link = f"[data-testid=room-item][data-id='{room}'] [data-testid=room-link]"
    tab.wait_selector(link)
    tab.click(link)
    tab.wait_selector("[data-testid=connection-status].online")
    return tab


def _firefox_view_drawn(tab: Tab) -> float:
    assert tab.call("() => window.__trinity.viewport.webgl") is True, "Firefox gave the page no WebGL"
    tab.wait_for("() => window.__trinity.viewport.frames > 0", what="a drawn frame")
    return drawn_fraction(tab.screenshot(tab.box(CANVAS)))


def _chromium_view_drawn(user: User) -> float:
    user.page.wait_for_function("() => window.__trinity.viewport.frames > 0")
    return drawn_fraction(user.page.locator(CANVAS).screenshot())


def test_firefox_renders_the_demo_room_and_shares_a_marker_and_chat_with_chromium(
    firefox_session: BidiSession, tabs: list[Tab], browser: Any, server: str, demo_room: str, users: list[User]
) -> None:
    a = _firefox_user(firefox_session, tabs, server, demo_room, (1280, 800))
    assert "Firefox" in a.call("() => navigator.userAgent")
    assert _firefox_view_drawn(a) > DRAWN
    assert a.call(LAYOUT_PROBLEMS_JS, [ROOM_CONTROLS, OVERLAYS]) == []
    b = open_user(browser, server, ENGINEER, demo_room)
    users.append(b)
    assert b.page.evaluate(LAYOUT_PROBLEMS_JS, [ROOM_CONTROLS, OVERLAYS]) == []

    # A marker with the keyboard shortcut and a real click on the bone in the middle of the view.
    a.press("m")
    box = a.box(CANVAS)
    a.click_at(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    marker = "[data-testid=annotation-item][data-kind=marker]"
    a.wait_selector(marker, timeout_s=5)
    b.page.wait_for_selector(marker, timeout=1000)

    # Chat both ways.
    a.click("[data-testid=tab-chat]")
    a.type_into("[data-testid=chat-input]", "Hello from Firefox")
    a.press(ENTER)
    b.page.click("[data-testid=tab-chat]")
    b.page.wait_for_selector("[data-testid=chat-text]:has-text('Hello from Firefox')")
    b.page.fill("[data-testid=chat-input]", "Hello from Chromium")
    b.page.press("[data-testid=chat-input]", "Enter")
    a.wait_for(
        "(text) => [...document.querySelectorAll('[data-testid=chat-text]')].some(e => e.textContent === text)",
        "Hello from Chromium",
        what="Chromium's chat message in Firefox",
    )


@pytest.mark.parametrize("size", TABLET_SCREENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_room_fits_a_tablet_screen_in_firefox(
    firefox_session: BidiSession, tabs: list[Tab], server: str, demo_room: str, size: tuple[int, int]
) -> None:
    tab = _firefox_user(firefox_session, tabs, server, demo_room, size)
    assert tab.call("() => [innerWidth, innerHeight]") == list(size)
    assert _firefox_view_drawn(tab) > DRAWN
    assert tab.call(LAYOUT_PROBLEMS_JS, [ROOM_CONTROLS, OVERLAYS]) == []


@pytest.mark.parametrize("size", TABLET_SCREENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_room_fits_a_tablet_screen_in_chromium(
    browser: Any, server: str, demo_room: str, users: list[User], size: tuple[int, int]
) -> None:
    user = open_user(browser, server, SURGEON, demo_room, {"width": size[0], "height": size[1]})
    users.append(user)
    wait_online(user.page)
    assert _chromium_view_drawn(user) > DRAWN
    assert user.page.evaluate(LAYOUT_PROBLEMS_JS, [ROOM_CONTROLS, OVERLAYS]) == []
