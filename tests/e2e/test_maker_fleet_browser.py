"""End-to-end: the maker room's Printers tab keeps up with the fleet (the demo fleet of simulated printers,
in Chromium). A technician retires an idle printer and a surgeon's dashboard drops it live; retiring a
printer that prints is refused, and the tab says why in the server's words; a fit-check copy of a guide is
marked as one in the job list and on its printer; the print quota shows what
GET /api/sites/{site}/print-quota says as jobs change, and an admin edits the site's limits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from server.demo import DEMO_SITE
from tests.support.browser import SURGEON, User, auth, demo_server, open_user
from tests.support.maker import (
    ADMIN,
    TECHNICIAN,
    approved_guide,
    create_admin,
    maker_room,
    queue_block,
    queue_fit_check,
)

pytestmark = pytest.mark.browser

UI_WAIT_MS = 90_000  # a print has to be prepared and sliced before a printer takes it
QUOTA_SHOWN = """(e) => ["active", "volume"].every((k) => {
  const row = document.querySelector(`[data-testid=quota-${k}]`);
  return row && Number(row.dataset.used) === e[k][0] && Number(row.dataset.limit) === e[k][1]
    && row.dataset.source === e[k][2];
})"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo server (as tests/e2e/conftest.py starts it) with an admin of the demo site as well."""
    data = tmp_path_factory.mktemp("trinity-maker")
    with demo_server(data) as url:
        create_admin(data)
        yield url


def card(page: Any, printer_id: str) -> Any:
    return page.locator(f"[data-testid=printer-card][data-printer='{printer_id}']")


def quota_matches(page: Any, server: str, headers: dict[str, str]) -> dict[str, Any]:
    """Wait until the quota view shows what the server says now (used, limit, whose limit); returns that."""
    quota: dict[str, Any] = httpx.get(f"{server}/api/sites/{DEMO_SITE}/print-quota", headers=headers).json()
    active, volume = quota["active_jobs"], quota["monthly_volume_cm3"]
    expected = {
        "active": [active["used"], active["limit"], active["source"]],
        "volume": [volume["used"], volume["limit"], volume["source"]],
    }
    page.wait_for_function(QUOTA_SHOWN, arg=expected, timeout=UI_WAIT_MS)
    shown = page.locator("[data-testid=quota-volume]").inner_text()
    assert f"{round(volume['used'], 1):g} / {round(volume['limit'], 1):g} cm³" in shown, shown
    return quota


def test_a_technician_retires_an_idle_printer_and_another_dashboard_drops_it_live(
    browser: object, server: str, users: list[User]
) -> None:
    maker = maker_room(server, TECHNICIAN)
    printer = f"{maker['site_id']}-bio-02"  # no print of these tests needs a bioink
    before = httpx.get(f"{server}/api/sites/{maker['site_id']}/fleet", headers=auth(server, SURGEON)).json()
    surgeon = open_user(browser, server, SURGEON, maker["id"])
    users.append(surgeon)
    technician = open_user(browser, server, TECHNICIAN, maker["id"])
    users.append(technician)
    for user in (surgeon, technician):
        card(user.page, printer).wait_for()
    assert surgeon.page.locator("[data-testid=printer-card]").count() == len(before["printers"])
    # Only technicians and admins may retire printers: nobody else is offered it.
    card(technician.page, printer).locator("[data-testid=printer-retire]").wait_for()
    assert surgeon.page.locator("[data-testid=printer-retire]").count() == 0

    tech_card = card(technician.page, printer)
    tech_card.locator("[data-testid=printer-retire]").click()  # asks first; "Keep it" keeps it
    name = next(p["name"] for p in before["printers"] if p["id"] == printer)
    assert f"Retire {name}?" in tech_card.locator("[data-testid=retire-confirmation]").inner_text()
    tech_card.locator("[data-testid=retire-cancel]").click()
    tech_card.locator("[data-testid=printer-retire]").wait_for()
    assert httpx.get(f"{server}/api/printers/{printer}", headers=auth(server, TECHNICIAN)).json()["state"] != "retired"

    tech_card.locator("[data-testid=printer-retire]").click()
    tech_card.locator("[data-testid=retire-confirm]").click()
    # The surgeon did nothing: the printer's last frame (`retired`) takes its card away.
    card(surgeon.page, printer).wait_for(state="detached", timeout=UI_WAIT_MS)
    card(technician.page, printer).wait_for(state="detached", timeout=UI_WAIT_MS)
    assert surgeon.page.locator("[data-testid=printer-card]").count() == len(before["printers"]) - 1
    retired = httpx.get(f"{server}/api/printers/{printer}", headers=auth(server, SURGEON)).json()
    assert retired["state"] == "retired" and retired["retired_at_ms"]


def test_retiring_a_printer_that_prints_shows_the_servers_reason(
    browser: object, server: str, users: list[User]
) -> None:
    maker = maker_room(server, TECHNICIAN)
    technician = open_user(browser, server, TECHNICIAN, maker["id"])
    users.append(technician)
    page = technician.page
    page.locator("[data-testid=printer-card]").first.wait_for()
    job = queue_block(server, TECHNICIAN, height_mm=120.0)  # hundreds of layers: it prints for minutes
    listed = page.locator(f"[data-testid=print-job][data-job='{job['id']}']")
    listed.wait_for()
    assert listed.get_attribute("data-purpose") == "clinical"
    assert listed.locator("[data-testid=print-job-purpose]").count() == 0  # the part itself: no mark
    on_it = f"[data-testid=printer-card][data-state=printing]:has([data-testid=printer-job][data-job='{job['id']}'])"
    printing = page.locator(on_it)
    printing.wait_for(timeout=UI_WAIT_MS)
    printer = printing.get_attribute("data-printer")
    assert printer

    busy = card(page, printer)
    busy.locator("[data-testid=printer-retire]").click()
    with page.expect_response(lambda r: r.request.method == "DELETE" and "/api/printers/" in r.url) as answer:
        busy.locator("[data-testid=retire-confirm]").click()
    refusal = answer.value
    assert refusal.status == 409, refusal.text()
    error = refusal.json()["error"]
    assert error["code"] == "printer_in_use" and f"job {job['id']} is on it" in error["message"]
    assert any(job["id"] in reason for reason in error["details"]["reasons"])
    shown = busy.locator("[data-testid=retire-error-text]")
    shown.wait_for()
    assert shown.inner_text() == error["message"]  # the server's words, as they are
    assert busy.get_attribute("data-state") == "printing"  # still in the fleet
    assert httpx.get(f"{server}/api/printers/{printer}", headers=auth(server, TECHNICIAN)).json()["state"] != "retired"

    cancelled = httpx.post(f"{server}/api/print-jobs/{job['id']}/cancel", headers=auth(server, TECHNICIAN))
    assert cancelled.status_code == 200, cancelled.text
    page.locator(f"[data-testid=print-job][data-job='{job['id']}'][data-state=cancelled]").wait_for(timeout=UI_WAIT_MS)


def test_a_fit_check_copy_is_marked_and_the_quota_follows_the_jobs(
    browser: object, server: str, users: list[User]
) -> None:
    maker = maker_room(server, TECHNICIAN)
    guide = approved_guide(server)
    surgeon = open_user(browser, server, SURGEON, maker["id"])
    users.append(surgeon)
    page = surgeon.page
    headers = auth(server, SURGEON)
    page.locator("[data-testid=printer-card]").first.wait_for()
    before = quota_matches(page, server, headers)
    assert page.locator("[data-testid=quota-edit]").is_hidden()  # only admins set limits

    job = queue_fit_check(server, TECHNICIAN, guide)
    assert job["purpose"] == "fit_check"
    listed = page.locator(f"[data-testid=print-job][data-job='{job['id']}']")
    listed.wait_for()
    assert listed.get_attribute("data-purpose") == "fit_check"
    assert listed.locator("[data-testid=print-job-purpose]").inner_text() == "fit check"
    # The copy on its printer's card is marked too.
    on_it = f"[data-testid=printer-card] [data-testid=printer-job][data-job='{job['id']}']"
    page.locator(on_it).wait_for(timeout=UI_WAIT_MS)
    assert page.locator(f"{on_it} [data-testid=print-job-purpose]").inner_text() == "fit check"
    while_printing = quota_matches(page, server, headers)
    assert while_printing["active_jobs"]["used"] >= before["active_jobs"]["used"] + 1

    cancelled = httpx.post(f"{server}/api/print-jobs/{job['id']}/cancel", headers=auth(server, TECHNICIAN))
    assert cancelled.status_code == 200, cancelled.text
    listed = page.locator(f"[data-testid=print-job][data-job='{job['id']}'][data-state=cancelled]")
    listed.wait_for(timeout=UI_WAIT_MS)
    assert listed.locator("[data-testid=print-job-purpose]").inner_text() == "fit check"
    after = quota_matches(page, server, headers)
    assert after["active_jobs"]["used"] == before["active_jobs"]["used"]  # the view followed the job's end


def test_an_admin_sets_the_sites_print_quota_and_sees_the_servers_refusal(
    browser: object, server: str, users: list[User]
) -> None:
    maker = maker_room(server, ADMIN, TECHNICIAN)
    admin = open_user(browser, server, ADMIN, maker["id"])
    users.append(admin)
    page = admin.page
    headers = auth(server, ADMIN)
    default = quota_matches(page, server, headers)
    assert default["active_jobs"]["source"] == default["monthly_volume_cm3"]["source"] == "default"

    page.click("[data-testid=quota-edit]")
    page.fill("[data-testid=quota-active-input]", "7")
    page.fill("[data-testid=quota-volume-input]", "123.5")
    page.click("[data-testid=quota-save]")
    saved = {
        "active": _site_limit(default, "active_jobs", 7),
        "volume": _site_limit(default, "monthly_volume_cm3", 123.5),
    }
    page.wait_for_function(QUOTA_SHOWN, arg=saved)  # the PATCH's answer, shown
    own = quota_matches(page, server, headers)
    assert (own["active_jobs"]["limit"], own["monthly_volume_cm3"]["limit"]) == (7, 123.5)
    assert own["active_jobs"]["source"] == own["monthly_volume_cm3"]["source"] == "site"

    # A limit the server refuses: its message as it is, nothing changed.
    page.click("[data-testid=quota-edit]")
    page.fill("[data-testid=quota-active-input]", "-1")
    with page.expect_response(lambda r: r.request.method == "PATCH" and "/print-quota" in r.url) as answer:
        page.click("[data-testid=quota-save]")
    assert answer.value.status == 422
    error = page.locator("[data-testid=quota-error]")
    error.wait_for()
    assert error.inner_text() == answer.value.json()["error"]["message"]
    assert "active_jobs" in error.inner_text()
    quota_matches(page, server, headers)  # still the site's 7 and 123.5

    # Emptied fields go back to the defaults (null).
    page.fill("[data-testid=quota-active-input]", "")
    page.fill("[data-testid=quota-volume-input]", "")
    page.click("[data-testid=quota-save]")
    page.locator("[data-testid=quota-form]").wait_for(state="hidden")
    back = quota_matches(page, server, headers)
    assert back["active_jobs"] == default["active_jobs"] and back["active_jobs"]["source"] == "default"
    assert back["monthly_volume_cm3"]["limit"] == default["monthly_volume_cm3"]["limit"]

    technician = open_user(browser, server, TECHNICIAN, maker["id"])
    users.append(technician)
    technician.page.locator("[data-testid=quota-active]").wait_for()
    assert technician.page.locator("[data-testid=quota-edit]").is_hidden()


def _site_limit(quota: dict[str, Any], key: str, limit: float) -> list[Any]:
    return [quota[key]["used"], limit, "site"]
