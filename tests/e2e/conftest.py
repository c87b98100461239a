"""Fixtures of the browser end-to-end tests: one real server (``python -m server.cli serve --demo`` in a
subprocess, data in a tmp dir, the non-default room limits of tests.support.browser.LIMITS) and one
Chromium per test module; every test makes its own rooms and browser contexts. Module scope, not
session: Playwright's sync API must be gone before the asyncio tests of other folders run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import playwright.sync_api as playwright_sync
import pytest

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, DIST, LIMITS_ENV
from tests.support.process import ServerProcess
from tests.support.services import missing


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("trinity-e2e")
    env = {**LIMITS_ENV, "TRINITY_DATA_DIR": str(data), "TRINITY_DEMO": "true"}
    process = ServerProcess(env, data / "server.log").start()
    try:
        yield process.base_url
    finally:
        process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not DIST.exists():
        missing("the built web client (web/dist)", "run `make web` (cd web && npm ci && npm run build)")
    if not Path(CHROMIUM).exists():
        missing(
            f"Chromium at {CHROMIUM}",
            "apt-get install -y --no-install-recommends chromium (never `playwright install`)",
        )
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
