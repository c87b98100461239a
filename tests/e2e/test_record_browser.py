"""End-to-end: the consultation record in the room page. A surgeon snapshots the 3D view, proposes a plan
version and approves it with their password (the browser's prompts); the engineer sees the approved
version; the report PDF downloads with the snapshot in it. Fixtures in conftest.py."""

from __future__ import annotations

import io

import httpx
import pypdf
import pytest

from tests.support.browser import ENGINEER, SURGEON, auth, close_users, create_room, open_user

pytestmark = pytest.mark.browser


def test_plan_is_proposed_and_approved_with_the_password_and_the_report_holds_the_snapshot(
    browser: object, server: str
) -> None:
    case = httpx.post(f"{server}/api/cases", json={"label": "REC-001"}, headers=auth(server, SURGEON))
    assert case.status_code == 201, case.text
    room = create_room(server, "Record room", case.json()["id"])
    surgeon = open_user(browser, server, SURGEON, room)
    engineer = open_user(browser, server, ENGINEER, room)
    try:
        page = surgeon.page
        page.click("[data-testid=tab-plan]")
        page.click("[data-testid=snapshot-button]")
        page.wait_for_selector("text=Snapshot added to the room's record")
        page.fill("[data-testid=plan-panel] textarea", "Resect at the planned plane")
        page.click("text=Propose plan version")
        page.wait_for_selector("[data-testid=plan-version] >> text=v1 · pending")

        answers = iter(["Looks right", "wrong password"])
        page.on("dialog", lambda d: d.accept(next(answers, SURGEON[1])))
        page.click("text=Approve…")  # comment, then a wrong password: refused, nothing recorded
        page.wait_for_selector("text=Wrong password: nothing was recorded")
        answers = iter(["Looks right", SURGEON[1]])
        page.click("text=Approve…")
        page.wait_for_selector("[data-testid=plan-version] >> text=v1 · approved")

        engineer.page.click("[data-testid=tab-plan]")
        engineer.page.wait_for_selector("[data-testid=plan-version] >> text=v1 · approved")
        assert engineer.page.locator("text=Approve…").count() == 0  # engineers do not decide

        report = httpx.get(f"{server}/api/rooms/{room}/report.pdf", headers=auth(server, SURGEON), timeout=60)
        assert report.status_code == 200 and report.headers["content-type"].startswith("application/pdf")
        pdf = pypdf.PdfReader(io.BytesIO(report.content))
        text = "\n".join(p.extract_text() or "" for p in pdf.pages)
        assert "Resect at the planned plane" in text and "approved" in text.lower()
        assert sum(len(p.images) for p in pdf.pages) >= 1  # the snapshot
    finally:
        close_users(surgeon, engineer)
