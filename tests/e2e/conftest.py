"""Fixtures of the browser end-to-end tests: one real server (``python -m server.cli serve --demo`` in a
subprocess, data in a tmp dir, the non-default room limits of tests.support.browser.LIMITS), one
Chromium per test module, and for the modules that ask, one Firefox ESR driven over WebDriver BiDi
(tests.support.firefox); every test makes its own rooms and browser contexts. Module scope, not
session: Playwright's sync API must be gone before the asyncio tests of other folders run. A missing
browser or web build fails the tests that need it, with how to install it: never a skip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import playwright.sync_api as playwright_sync
import pytest

from tests.support.bidi import BidiSession
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, DIST, User, close_users, demo_server
from tests.support.firefox import FIREFOX, HOW_TO_INSTALL, firefox
from tests.support.services import missing


def _require_web_client() -> None:
    if not DIST.exists():
        missing("the built web client (web/dist)", "run `make web` (cd web && npm ci && npm run build)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with demo_server(tmp_path_factory.mktemp("trinity-e2e")) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _require_web_client()
    if not Path(CHROMIUM).exists():
        missing(
            f"Chromium at {CHROMIUM}",
            "apt-get install -y --no-install-recommends chromium (never `playwright install`)",
        )
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def firefox_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BidiSession]:
    """Debian's Firefox ESR, headless, fresh profile; tests open tabs with `firefox_session.new_tab`."""
    _require_web_client()
    if not Path(FIREFOX).exists():
        missing(f"Firefox ESR at {FIREFOX}", HOW_TO_INSTALL)
    with firefox(tmp_path_factory.mktemp("firefox")) as session:
        yield session


@pytest.fixture
def users() -> Iterator[list[User]]:
    """Browser contexts a test opens (append them); closed afterwards, failing on any page error."""
    opened: list[User] = []
    yield opened
    close_users(*opened)
