"""A small synchronous WebDriver BiDi client (https://w3c.github.io/webdriver-bidi/) over `websockets`,
enough for the browser tests to drive a stock Firefox: tabs in their own user contexts, navigation,
scripts, real pointer and keyboard input, screenshots, and the page's uncaught errors.

Why not Playwright: Firefox needs Playwright's own patched build (``playwright install``, which this
project never runs), and Playwright's experimental BiDi channel for a stock Firefox (``moz-firefox``)
sends commands Firefox ESR does not have yet (``emulation.setMediaFeaturesOverride``), so it cannot even
open a page there. Debian's Firefox ESR speaks BiDi itself.

Scripts run as ``async (...args) => value`` functions: arguments and the result cross as JSON, so a test
gets plain Python values back. One connection, one thread: events (log entries) are collected while
waiting for command answers.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

ENTER = "\ue007"  # WebDriver's key code for Enter
COMMAND_TIMEOUT_S = 30.0


class BidiError(Exception):
    """The browser refused a command, or a script threw (the message is the browser's)."""


@dataclass
class LogEntry:
    level: str  # debug | info | warn | error
    kind: str  # "javascript" (uncaught errors) or "console"
    text: str


class BidiSession:
    """One WebDriver BiDi session over an open WebSocket to the browser's `ws://…/session`."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._next_id = 0
        self.log: list[LogEntry] = []
        self.send("session.new", {"capabilities": {"alwaysMatch": {"acceptInsecureCerts": True}}})
        self.send("session.subscribe", {"events": ["log.entryAdded"]})

    def send(self, method: str, params: dict[str, Any] | None = None, timeout_s: float = COMMAND_TIMEOUT_S) -> Any:
        """Sends one command and returns its result; events that arrive meanwhile are handled."""
        self._next_id += 1
        command_id = self._next_id
        self._ws.send(json.dumps({"id": command_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer to {method} within {timeout_s} s")
            message = json.loads(self._ws.recv(timeout=remaining))
            if message.get("id") == command_id:
                if message.get("type") == "error":
                    raise BidiError(f"{method}: {message.get('error')}: {message.get('message')}")
                return message.get("result")
            if message.get("method") == "log.entryAdded":
                entry = message["params"]
                self.log.append(LogEntry(entry.get("level", ""), entry.get("type", ""), entry.get("text", "")))

    def page_errors(self) -> list[str]:
        """Uncaught errors of every page so far (what Playwright reports as `pageerror`)."""
        return [e.text for e in self.log if e.kind == "javascript" and e.level == "error"]

    def new_tab(self, width: int, height: int) -> Tab:
        """A tab in a user context of its own (cookies and storage not shared with other tabs), with a
        viewport of width by height CSS pixels."""
        user_context = self.send("browser.createUserContext")["userContext"]
        context = self.send("browsingContext.create", {"type": "tab", "userContext": user_context})["context"]
        tab = Tab(self, context)
        tab.set_viewport(width, height)
        # A background tab draws no animation frames, and the 3D view draws on them: this one in front.
        self.send("browsingContext.activate", {"context": context})
        return tab

    def close_browser(self) -> None:
        """Asks the browser to quit (its process then ends by itself)."""
        with suppress(BidiError, TimeoutError, OSError, ConnectionClosed):
            self.send("browser.close", timeout_s=10)


@contextmanager
def bidi_session(ws_url: str) -> Iterator[BidiSession]:
    """A new session on the browser's BiDi endpoint; the browser is asked to quit at the end."""
    with connect(ws_url, max_size=None, open_timeout=COMMAND_TIMEOUT_S) as ws:
        session = BidiSession(ws)
        try:
            yield session
        finally:
            session.close_browser()


class Tab:
    """One browsing context (a tab) of a BidiSession."""

    def __init__(self, session: BidiSession, context: str) -> None:
        self.session = session
        self.context = context

    def close(self) -> None:
        self.session.send("browsingContext.close", {"context": self.context})

    def set_viewport(self, width: int, height: int) -> None:
        self.session.send(
            "browsingContext.setViewport", {"context": self.context, "viewport": {"width": width, "height": height}}
        )

    def goto(self, url: str) -> None:
        self.session.send("browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"})

    def call(self, function: str, *args: Any) -> Any:
        """Runs `function` (JavaScript source of a possibly async function) with JSON-able `args` in the page
        and returns its result, through JSON (undefined comes back as None)."""
        declaration = (
            "async (json) => { const value = await (" + function + ")(...JSON.parse(json));"
            " return JSON.stringify(value === undefined ? null : value); }"
        )
        answer = self.session.send(
            "script.callFunction",
            {
                "functionDeclaration": declaration,
                "arguments": [{"type": "string", "value": json.dumps(args)}],
                "target": {"context": self.context},
                "awaitPromise": True,
                "resultOwnership": "none",
                "userActivation": True,
            },
        )
        if answer["type"] == "exception":
            details = answer["exceptionDetails"]
            raise BidiError(f"script threw: {details.get('text')}")
        return json.loads(answer["result"]["value"])

    def wait_for(self, function: str, *args: Any, timeout_s: float = 10.0, what: str = "") -> Any:
        """Calls `function` every 50 ms until it returns something truthy; returns that."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.call(function, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout_s} s for {what or function}")
            time.sleep(0.05)

    def wait_selector(self, selector: str, timeout_s: float = 10.0) -> None:
        """Waits until an element matching the CSS selector exists and is laid out (not hidden)."""
        self.wait_for(
            "(sel) => { const el = document.querySelector(sel); return !!el && el.getClientRects().length > 0; }",
            selector,
            timeout_s=timeout_s,
            what=selector,
        )

    def box(self, selector: str) -> dict[str, float]:
        """The element's box in viewport CSS pixels: x, y, width, height."""
        found = self.call(
            "(sel) => { const el = document.querySelector(sel); if (!el) return null;"
            " const r = el.getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width, height: r.height}; }",
            selector,
        )
        if found is None:
            raise BidiError(f"no element matches {selector}")
        return dict(found)

    def click_at(self, x: float, y: float) -> None:
        """A real left click (pointer move, down, up) at viewport CSS pixel (x, y)."""
        self._perform(
            {
                "type": "pointer",
                "id": "mouse",
                "parameters": {"pointerType": "mouse"},
                "actions": [
                    {"type": "pointerMove", "x": round(x), "y": round(y)},
                    {"type": "pointerDown", "button": 0},
                    {"type": "pause", "duration": 30},
                    {"type": "pointerUp", "button": 0},
                ],
            }
        )

    def click(self, selector: str) -> None:
        """Scrolls the element into view and clicks its centre."""
        self.call("(sel) => document.querySelector(sel).scrollIntoView({block: 'center'})", selector)
        b = self.box(selector)
        self.click_at(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2)

    def press(self, *keys: str) -> None:
        """Presses and releases each key in turn (a character, or a WebDriver key code such as ENTER)."""
        actions: list[dict[str, Any]] = []
        for key in keys:
            actions += [{"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]
        self._perform({"type": "key", "id": "keyboard", "actions": actions})

    def type_into(self, selector: str, text: str) -> None:
        """Clicks the field and types the text key by key, as a user would."""
        self.click(selector)
        self.press(*text)

    def screenshot(self, box: dict[str, float] | None = None) -> bytes:
        """PNG of the viewport, or of a box of it (viewport CSS pixels)."""
        params: dict[str, Any] = {"context": self.context, "origin": "viewport"}
        if box is not None:
            params["clip"] = {"type": "box", **{k: box[k] for k in ("x", "y", "width", "height")}}
        return base64.b64decode(self.session.send("browsingContext.captureScreenshot", params)["data"])

    def _perform(self, source: dict[str, Any]) -> None:
        self.session.send("input.performActions", {"context": self.context, "actions": [source]})
        self.session.send("input.releaseActions", {"context": self.context})
