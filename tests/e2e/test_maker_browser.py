"""End-to-end: the maker room of the demo fleet in Chromium. The surgeon opens the maker room, sees every
simulated printer, queues a part over REST, and watches a printer take it and print it live."""

from __future__ import annotations

import io

import httpx
import pytest
import trimesh

from tests.support.browser import SURGEON, auth, close_users, open_user

pytestmark = pytest.mark.browser


def test_maker_room_shows_the_fleet_and_a_print_live(browser: object, server: str) -> None:
    headers = auth(server, SURGEON)
    rooms = httpx.get(f"{server}/api/rooms", headers=headers).json()
    maker = next(r for r in rooms if r["kind"] == "maker")
    fleet = httpx.get(f"{server}/api/sites/{maker['site_id']}/fleet", headers=headers).json()
    surgeon = open_user(browser, server, SURGEON, maker["id"])
    try:
        page = surgeon.page
        page.wait_for_selector("[data-testid=tab-printers], [data-testid=tab-fleet]")
        cards = page.locator("[data-testid=printer-card]")
        cards.first.wait_for()
        assert cards.count() == len(fleet["printers"]) >= 10

        case = httpx.post(f"{server}/api/cases", json={"label": "MAKER-001"}, headers=headers).json()
        part = io.BytesIO()
        trimesh.creation.box(extents=(20.0, 15.0, 6.0)).export(part, file_type="stl")
        artifact = httpx.post(
            f"{server}/api/cases/{case['id']}/meshes", files=[("file", ("block.stl", part.getvalue()))], headers=headers
        )
        assert artifact.status_code == 201, artifact.text
        job = httpx.post(
            f"{server}/api/print-jobs",
            json={"artifact_id": artifact.json()["id"], "part_class": "anatomical_model"},
            headers=headers,
            timeout=60,
        )
        assert job.status_code == 201, job.text
        # Surgeons queue; a technician releases the job to the fleet.
        technician = auth(server, ("technician", "technician-demo-pass"))
        for _ in range(120):
            if httpx.get(f"{server}/api/print-jobs/{job.json()['id']}", headers=headers).json()["state"] == "ready":
                break
            page.wait_for_timeout(500)
        started = httpx.post(f"{server}/api/print-jobs/{job.json()['id']}/start", json={}, headers=technician)
        assert started.status_code in (200, 202), started.text
        # A printer takes it: its card goes to printing and shows progress and layers as they come.
        page.wait_for_selector("[data-testid=printer-card][data-state=printing]", timeout=90_000)
        layer_shown = "() => [...document.querySelectorAll('[data-testid=printer-progress]')]" + (
            ".some(e => /layer [0-9]+[/][0-9]+/.test(e.textContent))"
        )
        page.wait_for_function(layer_shown, timeout=90_000)
    finally:
        close_users(surgeon)
