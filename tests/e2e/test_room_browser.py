"""End-to-end: two users in two Chromium contexts share one room through the built web client.

Needs web/dist (``cd web && npm ci && npm run build``), Debian's Chromium (/usr/bin/chromium, or
TRINITY_CHROMIUM) and the Python ``playwright`` package; never ``playwright install``. The server
is a real ``python -m server.cli serve --demo`` subprocess on a free port, data in a tmp dir
(fixtures in conftest.py, shared helpers in tests/support/browser.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DIST,
    ENGINEER,
    LIMITS,
    SURGEON,
    Page,
    User,
    canvas_point,
    click_surface,
    create_room,
    open_user,
    token,
    wait_online,
)

pytestmark = pytest.mark.browser

# Older names, still imported from here by test_video_browser.py; new tests import tests.support.browser.
__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "DIST", "ENGINEER", "SURGEON", "_open", "_token"]
_open = open_user
_token = token


@pytest.fixture
def room_id(server: str, request: pytest.FixtureRequest) -> str:
    """A fresh room per test: the surgeon owns it, the engineer joins through an invite link."""
    return create_room(server, f"e2e {request.node.name}")


@pytest.fixture
def pair(browser: Any, server: str, room_id: str) -> Iterator[tuple[User, User]]:
    a = open_user(browser, server, SURGEON, room_id)
    b = open_user(browser, server, ENGINEER, room_id)
    yield a, b
    for u in (a, b):
        assert not u.errors, u.errors
        u.context.close()


def _annotation_values(page: Page, kind: str) -> list[str]:
    return page.locator(
        f"[data-testid=annotation-item][data-kind={kind}] [data-testid=annotation-value]"
    ).all_inner_texts()


def _pose(page: Page) -> dict[str, Any]:
    return dict(page.evaluate("window.__trinity.viewport.pose()"))


def _distance(p: list[float], q: list[float]) -> float:
    return math.dist(p, q)


def test_marker_and_distance_reach_the_other_user_within_a_second(
    pair: tuple[User, User],
) -> None:
    a, b = pair
    # The placeholder bone fills the middle of the view, its shaft vertical through the centre.
    a.page.keyboard.press("m")
    click_surface(a.page, 0.5, 0.5)
    a.page.wait_for_selector("[data-testid=annotation-item][data-kind=marker]", timeout=5000)
    b.page.wait_for_selector("[data-testid=annotation-item][data-kind=marker]", timeout=1000)

    a.page.keyboard.press("d")
    click_surface(a.page, 0.5, 0.35)
    click_surface(a.page, 0.5, 0.65)
    a.page.wait_for_selector("[data-testid=annotation-item][data-kind=distance]", timeout=5000)
    b.page.wait_for_selector("[data-testid=annotation-item][data-kind=distance]", timeout=1000)

    a_values = _annotation_values(a.page, "distance")
    b_values = _annotation_values(b.page, "distance")
    assert len(a_values) == 1
    assert a_values == b_values
    assert a_values[0].endswith(" mm")
    assert float(a_values[0].split()[0]) > 10  # a real span along the shaft
    raw_a = a.page.get_attribute("[data-kind=distance] [data-testid=annotation-value]", "data-value")
    raw_b = b.page.get_attribute("[data-kind=distance] [data-testid=annotation-value]", "data-value")
    assert raw_a == raw_b


def _settled_pose(page: Page, timeout_s: float = 10.0) -> dict[str, Any]:
    """A's pose once two readings 200 ms apart agree (on a loaded machine damping takes longer)."""
    deadline = time.monotonic() + timeout_s
    pose = _pose(page)
    while time.monotonic() < deadline:
        page.wait_for_timeout(200)
        again = _pose(page)
        if _distance(again["position"], pose["position"]) < 0.01:
            return again
        pose = again
    raise AssertionError("the presenter's camera never came to rest")


def test_followers_camera_follows_the_presenter(pair: tuple[User, User]) -> None:
    a, b = pair
    a.page.click("[data-testid=presenter-button]")
    b.page.wait_for_selector("[data-testid=presenter-status]:has-text('is presenting')", timeout=3000)
    before = _pose(b.page)

    # Orbit A's view with a real mouse drag.
    x, y = canvas_point(a.page, 0.5, 0.5)
    a.page.mouse.move(x, y)
    a.page.mouse.down()
    for i in range(1, 11):
        a.page.mouse.move(x + 25 * i, y + 6 * i)
    a.page.mouse.up()
    target = _settled_pose(a.page)  # the orbit controls' damping has stopped moving A's camera
    assert _distance(target["position"], before["position"]) > 20

    b.page.wait_for_function(
        """([p]) => { const q = window.__trinity.viewport.pose().position;
                     return Math.hypot(q[0]-p[0], q[1]-p[1], q[2]-p[2]) < 1; }""",
        arg=[target["position"]],
        timeout=3000,
    )
    # Browsing freely detaches B's camera from the presenter.
    b.page.check("[data-testid=browse-freely]")
    assert b.page.evaluate("window.__trinity.cameraSync.following") is False


def test_reload_restores_the_room(pair: tuple[User, User]) -> None:
    a, b = pair
    a.page.keyboard.press("m")
    click_surface(a.page, 0.5, 0.5)
    a.page.click("[data-testid=tab-chat]")
    a.page.fill("[data-testid=chat-input]", "before reload")
    a.page.press("[data-testid=chat-input]", "Enter")
    a.page.click("[data-testid=presenter-button]")
    b.page.wait_for_selector("[data-testid=annotation-item][data-kind=marker]", timeout=3000)
    b.page.wait_for_selector("[data-testid=presenter-badge]", timeout=3000)

    b.page.reload()
    wait_online(b.page)
    assert b.page.locator("[data-testid=annotation-item][data-kind=marker]").count() == 1
    b.page.click("[data-testid=tab-chat]")
    assert "before reload" in b.page.locator("[data-testid=chat-message]").all_inner_texts()[-1]
    assert "is presenting" in b.page.inner_text("[data-testid=presenter-status]")
    assert b.page.evaluate("window.__trinity.cameraSync.following") is True


def test_chat_goes_both_ways(pair: tuple[User, User]) -> None:
    a, b = pair
    for u in (a, b):
        u.page.click("[data-testid=tab-chat]")
    a.page.fill("[data-testid=chat-input]", "Can you see the fracture line?")
    a.page.click("[data-testid=chat-send]")
    b.page.wait_for_selector("[data-testid=chat-message]:has-text('Can you see the fracture line?')", timeout=2000)
    b.page.fill("[data-testid=chat-input]", "Yes, 3 mm from the condyle.")
    b.page.press("[data-testid=chat-input]", "Enter")
    a.page.wait_for_selector("[data-testid=chat-message]:has-text('Yes, 3 mm from the condyle.')", timeout=2000)
    assert a.page.locator("[data-testid=chat-message]").count() == 2


def test_dropped_connection_shows_banner_and_catches_up(pair: tuple[User, User]) -> None:
    a, b = pair
    for u in (a, b):
        u.page.click("[data-testid=tab-chat]")
    banner = b.page.locator("[data-testid=reconnect-banner]")
    assert banner.is_hidden()

    b.context.set_offline(True)
    banner.wait_for(state="visible", timeout=5000)
    # While B is away: A chats and annotates; B writes a message that must be queued, not lost.
    a.page.fill("[data-testid=chat-input]", "sent while you were away")
    a.page.press("[data-testid=chat-input]", "Enter")
    a.page.locator("[data-testid=viewport-canvas]").focus()
    a.page.keyboard.press("m")
    click_surface(a.page, 0.5, 0.5)
    a.page.wait_for_selector("[data-testid=annotation-item][data-kind=marker]", state="attached", timeout=3000)
    b.page.fill("[data-testid=chat-input]", "typed while offline")
    b.page.press("[data-testid=chat-input]", "Enter")
    b.page.wait_for_selector("[data-testid=chat-pending]", timeout=1000)
    assert "will be sent" in banner.inner_text()

    b.context.set_offline(False)
    banner.wait_for(state="hidden", timeout=10_000)
    b.page.wait_for_selector("[data-testid=chat-message]:has-text('sent while you were away')", timeout=3000)
    b.page.wait_for_selector("[data-testid=chat-message]:has-text('typed while offline')", timeout=3000)
    a.page.wait_for_selector("[data-testid=chat-message]:has-text('typed while offline')", timeout=3000)
    b.page.click("[data-testid=tab-annotations]")
    b.page.wait_for_selector("[data-testid=annotation-item][data-kind=marker]", timeout=3000)
    assert b.page.locator("[data-testid=chat-pending]").count() == 0

    # A socket killed from inside the page (as a network failure would) resumes the same way.
    seq = b.page.evaluate("window.__trinity.state.seq")
    b.page.evaluate("window.__trinity.socket.drop()")
    a.page.fill("[data-testid=chat-input]", "after the drop")
    a.page.press("[data-testid=chat-input]", "Enter")
    b.page.click("[data-testid=tab-chat]")
    b.page.wait_for_selector("[data-testid=chat-message]:has-text('after the drop')", timeout=5000)
    assert b.page.evaluate("window.__trinity.socket.reconnects") >= 2
    assert b.page.evaluate("window.__trinity.state.seq") > seq


# Collects the socket's error frames in window.__errors; window.__within(ms, promise) fails a promise
# that takes too long, so a regression fails the test instead of hanging it. Returns the adopted limits.
_WATCH_ERRORS = """() => { const s = window.__trinity.socket; window.__errors = [];
    s.on("error", (e) => window.__errors.push(e.code));
    window.__within = (ms, p) => Promise.race([p, new Promise((_, no) =>
        setTimeout(() => no(new Error(`no answer in ${ms} ms`)), ms))]);
    return s.limits; }"""


def test_a_burst_of_ops_is_paced_under_the_announced_limits_in_order(pair: tuple[User, User]) -> None:
    a, b = pair
    assert a.page.evaluate(_WATCH_ERRORS) == LIMITS
    n = 120  # three times the server's burst: sent unpaced, most of them would be refused `rate_limited`
    result = a.page.evaluate(
        """async (n) => { const s = window.__trinity.socket; const t0 = performance.now();
            const ops = Array.from({ length: n }, (_, i) => s.submitOp("chat.send", { text: `burst ${i}` }));
            const seqs = await window.__within(15000, Promise.all(ops));
            return { seqs, ms: performance.now() - t0, errors: window.__errors, pending: s.pendingOps }; }""",
        n,
    )
    assert result["errors"] == []
    assert result["pending"] == 0
    assert result["seqs"] == sorted(result["seqs"]) and len(set(result["seqs"])) == n  # submission order
    # 0.8 x 40/s with a burst of 20: at least (120 - 20) / 32 s.
    assert result["ms"] > (n - LIMITS["burst"] // 2) / (0.8 * LIMITS["rate_per_s"]) * 1000 * 0.9
    b.page.click("[data-testid=tab-chat]")
    b.page.wait_for_selector(f"[data-testid=chat-message]:has-text('burst {n - 1}')", timeout=5000)
    texts = b.page.locator("[data-testid=chat-text]").all_inner_texts()
    assert texts == [f"burst {i}" for i in range(n)]


def test_unacknowledged_ops_are_resent_in_submission_order_after_a_drop(pair: tuple[User, User]) -> None:
    a, b = pair
    a.page.evaluate(_WATCH_ERRORS)
    n = 60  # more than the client's burst: some still wait in the outbox when the connection drops
    result = a.page.evaluate(
        """async (n) => { const s = window.__trinity.socket; const before = s.reconnects;
            const all = Array.from({ length: n }, (_, i) => s.submitOp("chat.send", { text: `order ${i}` }));
            s.drop();  // what was sent is lost unacknowledged, what was queued is discarded
            const seqs = await window.__within(15000, Promise.all(all));
            return { seqs, reconnects: s.reconnects - before, errors: window.__errors, pending: s.pendingOps }; }""",
        n,
    )
    assert result["reconnects"] >= 1
    assert result["errors"] == []
    assert result["pending"] == 0
    assert result["seqs"] == sorted(result["seqs"]) and len(set(result["seqs"])) == n
    b.page.click("[data-testid=tab-chat]")
    b.page.wait_for_selector(f"[data-testid=chat-message]:has-text('order {n - 1}')", timeout=5000)
    assert b.page.locator("[data-testid=chat-text]").all_inner_texts() == [f"order {i}" for i in range(n)]


def test_an_op_without_answer_is_retransmitted_after_five_seconds(pair: tuple[User, User]) -> None:
    a, b = pair
    a.page.evaluate(_WATCH_ERRORS)
    result = a.page.evaluate(
        """async () => { const s = window.__trinity.socket; const opId = s.newOpId();
            const send = WebSocket.prototype.send; let attempts = 0;
            WebSocket.prototype.send = function (data) {  // the first copy is lost on the way
              if (typeof data === "string" && data.includes(`"${opId}"`) && attempts++ === 0) return;
              return send.call(this, data);
            };
            const t0 = performance.now();
            try { await window.__within(10000, s.submitOp("chat.send", { text: "lost once" }, opId)); }
            finally { WebSocket.prototype.send = send; }
            return { ms: performance.now() - t0, attempts, reconnects: s.reconnects }; }"""
    )
    assert result["attempts"] == 2
    assert result["reconnects"] == 0  # re-sent on the same connection
    assert 5000 <= result["ms"] < 8000
    b.page.click("[data-testid=tab-chat]")
    b.page.wait_for_selector("[data-testid=chat-message]:has-text('lost once')", timeout=3000)
    assert b.page.locator("[data-testid=chat-message]").count() == 1


def test_a_frame_over_the_size_limit_is_refused_in_the_browser(pair: tuple[User, User]) -> None:
    a, b = pair
    a.page.evaluate(_WATCH_ERRORS)
    # Through the UI: a note whose op would be ~50 kB, over the announced 48 000 bytes.
    a.page.keyboard.press("n")
    a.page.evaluate("window.__trinity.tools.noteText = 'x'.repeat(50000)")
    a.page.click("[data-testid=note-add-unpinned]")
    toast = a.page.wait_for_selector("[data-testid=toast]:has-text('too large to send')", timeout=2000)
    assert "47 kB" in toast.inner_text()  # the announced limit, not the 64 KiB default
    refused = a.page.evaluate(
        """async () => { const s = window.__trinity.socket;
            try { await window.__within(3000, s.submitOp("chat.send", { text: "y".repeat(60000) })); return null; }
            catch (e) { return { code: e.frame?.code ?? String(e), local: e.frame?.details?.local ?? null,
                                 pending: s.pendingOps }; } }"""
    )
    assert refused == {"code": "too_large", "local": True, "pending": 0}
    a.page.wait_for_timeout(300)
    assert a.page.evaluate("window.__errors") == []  # the server never saw the frames
    assert a.page.locator("[data-testid=annotation-item]").count() == 0
    assert b.page.locator("[data-testid=annotation-item]").count() == 0


def test_create_room_and_join_with_an_invite_link(browser: Any, server: str) -> None:
    owner_ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    guest_ctx = browser.new_context(viewport={"width": 1024, "height": 768})  # tablet landscape
    try:
        owner = owner_ctx.new_page()
        owner.goto(f"{server}/")
        owner.fill("[data-testid=login-username]", SURGEON[0])
        owner.fill("[data-testid=login-password]", "wrong")
        owner.click("[data-testid=login-submit]")
        owner.wait_for_selector("[data-testid=login-error]:visible")
        owner.fill("[data-testid=login-password]", SURGEON[1])
        owner.click("[data-testid=login-submit]")
        owner.wait_for_selector("[data-testid=room-item]")  # the demo room
        owner.fill("[data-testid=room-create-title]", "Invite flow")
        owner.click("[data-testid=room-create]")
        wait_online(owner)
        assert owner.inner_text("[data-testid=room-title]") == "Invite flow"
        owner.click("[data-testid=invite-button]")
        owner.click("[data-testid=invite-create]")
        url = owner.locator("[data-testid=invite-url]").input_value()
        assert "#/invite/" in url

        guest = guest_ctx.new_page()
        guest.goto(url)
        guest.fill("[data-testid=login-username]", ENGINEER[0])
        guest.fill("[data-testid=login-password]", ENGINEER[1])
        guest.click("[data-testid=login-submit]")
        wait_online(guest)
        assert guest.inner_text("[data-testid=room-title]") == "Invite flow"
        owner.wait_for_selector(
            "[data-testid=presence-item][data-status=active]:has-text('Eli Engineer')", timeout=3000
        )
    finally:
        owner_ctx.close()
        guest_ctx.close()
