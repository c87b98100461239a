"""End-to-end: imaging and design in the room page, in Chromium, against a real server.

A surgeon uploads a synthetic CT (tests.support.phantoms) through the Imaging tab, builds a bone model
that reaches the other user's scene; the slice viewer shows the volume and links its cursor with the 3D
view; a cut with a plane placed with the plane tool makes a second version and a resected piece for
both users; a refused file's reason is shown as text, never as HTML. Fixtures in conftest.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import (
    SURGEON,
    Page,
    User,
    auth,
    canvas_point,
    click_surface,
    create_room,
    open_pair,
    open_user,
)
from tests.support.browser_imaging import create_case, series_id, upload_series, wait_job
from tests.support.imaging_flow import zip_folder
from tests.support.phantoms import write_series

pytestmark = pytest.mark.browser

XSS_NAME = "<img src=x onerror=window.__xss=1>.txt"
# A closed tetrahedron (10 mm legs), the smallest watertight mesh, as ASCII STL.
_CORNERS = [(0, 0, 0), (10, 0, 0), (0, 10, 0), (0, 0, 10)]
TETRAHEDRON_STL = (
    "solid plate\n"
    + "".join(
        "facet normal 0 0 0\n outer loop\n"
        + "".join(f"  vertex {x} {y} {z}\n" for x, y, z in (_CORNERS[i] for i in face))
        + " endloop\nendfacet\n"
        for face in ((0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 3))
    )
    + "endsolid plate\n"
).encode()
REVOKED = "async (url) => { try { await fetch(url); return false; } catch { return true; } }"


# ---- REST set-up (what the tests are not about) --------------------------------------------------------


def _build_model(server: str, case_id: str, room_id: str) -> str:
    """A bone model of the case's series, shown in the room; returns the scene model's id. Its own lineage
    per room: by default a case's bone models of one series are versions of one lineage, shared by rooms."""
    headers = auth(server, SURGEON)
    body = {"name": "Bone", "preset": "bone", "room_id": room_id, "lineage_id": f"bone-{room_id[:12]}"}
    url = f"{server}/api/cases/{case_id}/imaging/series/{series_id(server, case_id)}/models"
    response = httpx.post(url, json=body, headers=headers)
    assert response.status_code == 202, response.text
    return str(wait_job(server, headers, response.json()["id"])["result"]["lineage_id"])


@pytest.fixture(scope="module")
def ct_case(server: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A case holding one synthetic CT series with its volume (64 by 48 by 40 voxels), ingested over REST."""
    case_id = create_case(server, "E2E-CT")
    upload_series(server, case_id, write_series(tmp_path_factory.mktemp("ct") / "series").paths)
    return case_id


def _wait_model_loaded(page: Page, model_id: str) -> None:
    page.wait_for_function("id => window.__trinity.models.loadState(id) === 'loaded'", arg=model_id, timeout=15_000)


def _open_slices(page: Page) -> None:
    page.click("[data-testid=tab-imaging]")
    page.click("[data-testid=series-item][data-has-volume=true] [data-testid=series-view-slices]")
    for plane in ("axial", "coronal", "sagittal"):
        page.wait_for_selector(f"[data-testid=slice-image-{plane}][data-index]", timeout=10_000)


def _index(page: Page, plane: str) -> int:
    return int(page.get_attribute(f"[data-testid=slice-view][data-plane={plane}]", "data-index"))


def _cursor(page: Page) -> list[float]:
    return [float(v) for v in page.get_attribute("[data-testid=cursor-lps]", "data-lps").split(",")]


def _wait_data(page: Page, selector: str, key: str, *, equal: str | None = None, differs: str | None = None) -> None:
    """Wait until an element's data-<key> equals, or no longer equals, a value."""
    page.wait_for_function(
        "([sel, key, equal, differs]) => { const v = document.querySelector(sel)?.dataset[key];"
        " return equal !== null ? v === equal : v !== differs; }",
        arg=[selector, key, equal, differs],
    )


def _locate(server: str, case_id: str, point: list[float]) -> dict[str, Any]:
    """The server's answer for where an LPS point falls in each plane (and the axial layout)."""
    base = f"{server}/api/cases/{case_id}/imaging/series/{series_id(server, case_id)}"
    headers = auth(server, SURGEON)
    found = httpx.get(f"{base}/volume/locate", params={"point": ",".join(map(str, point))}, headers=headers).json()
    found["layout"] = httpx.get(f"{base}/volume", headers=headers).json()["planes"]
    return dict(found)


# ---- the scenarios -------------------------------------------------------------------------------------


def test_upload_a_ct_build_a_model_and_the_other_user_sees_it(
    browser: Any, server: str, users: list[User], tmp_path: Path
) -> None:
    case_id = create_case(server, "E2E-UPLOAD")
    room = create_room(server, "e2e upload", case_id)
    written = write_series(tmp_path / "series")
    study = tmp_path / "study.zip"
    study.write_bytes(zip_folder(written.paths))
    a, b = open_pair(browser, server, room, users)

    a.page.click("[data-testid=tab-imaging]")
    a.page.wait_for_selector("[data-testid=imaging-case]:has-text('E2E-UPLOAD')")
    a.page.set_input_files("[data-testid=imaging-upload-input]", str(study))
    a.page.click("[data-testid=imaging-upload-submit]")
    a.page.wait_for_selector("[data-testid=imaging-upload-job][data-state=succeeded]", timeout=60_000)
    assert "40 accepted" in a.page.inner_text("[data-testid=imaging-upload-summary]")
    series = a.page.wait_for_selector("[data-testid=series-item][data-has-volume=true]", timeout=10_000)
    assert "64 \u00d7 48 \u00d7 40 voxels" in series.inner_text()
    a.page.wait_for_selector("[data-testid=ingest-report] [data-testid=ingest-counts]:has-text('40 accepted')")

    a.page.click("[data-testid=series-build-toggle]")
    a.page.select_option("[data-testid=model-preset]", "bone")
    a.page.fill("[data-testid=model-name]", "Phantom mandible")  # letters of tool shortcuts: typed, not tools
    assert a.page.evaluate("window.__trinity.tools.tool") == "select"
    a.page.click("[data-testid=model-build]")
    a.page.wait_for_selector("[data-testid=model-job][data-state=succeeded]", timeout=60_000)

    # The model reaches the other user's scene list and 3D view, and their jobs list shows the work.
    b.page.click("[data-testid=tab-scene]")
    item = b.page.wait_for_selector("[data-testid=model-item]:has-text('Phantom mandible')", timeout=10_000)
    model_id = item.get_attribute("data-id")
    _wait_model_loaded(b.page, model_id)
    assert b.page.locator("[data-testid=placeholder-label]").is_hidden()
    b.page.click("[data-testid=tab-jobs]")
    b.page.wait_for_selector("[data-testid=job-item][data-kind='imaging.build_model'][data-state=succeeded]")
    b.page.wait_for_selector("[data-testid=job-item][data-kind='imaging.ingest'][data-state=succeeded]")


def test_slice_viewer_scrolls_picks_and_links_the_3d_cursor(
    browser: Any, server: str, users: list[User], ct_case: str
) -> None:
    room = create_room(server, "e2e slices", ct_case)
    model_id = _build_model(server, ct_case, room)
    a = open_user(browser, server, SURGEON, room, {"width": 1024, "height": 768})  # tablet, landscape
    users.append(a)
    page = a.page
    _open_slices(page)
    _wait_model_loaded(page, model_id)

    # Moving the slider shows another slice: a new image, the old object URL given back.
    image = "[data-testid=slice-image-axial]"
    first = page.get_attribute(image, "src")
    assert first.startswith("blob:")
    page.locator("[data-testid=slice-slider-axial]").fill("30")
    page.wait_for_selector(f"{image}[data-index='30']")
    assert page.get_attribute(image, "src") != first
    assert page.inner_text("[data-testid=slice-index-axial]") == "31 / 40"
    assert page.evaluate(REVOKED, first) is True
    page.hover("[data-testid=slice-frame-axial]")
    page.mouse.wheel(0, 120)
    page.wait_for_selector(f"{image}[data-index='31']")

    # Clicking a pixel of the axial slice moves the cursor there: the other planes follow, so does 3D.
    before = {p: str(_index(page, p)) for p in ("coronal", "sagittal")}
    box = page.locator("[data-testid=slice-frame-axial]").bounding_box()
    fx, fy = 0.27, 0.71  # not on a voxel boundary, where rounding may go either way
    page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
    for plane, index in before.items():
        _wait_data(page, f"[data-testid=slice-view][data-plane={plane}]", "index", differs=index)
    assert _index(page, "axial") == 31
    cursor = _cursor(page)
    assert page.evaluate("window.__trinity.cursor.position()") == pytest.approx(cursor, abs=1e-3)
    # The client's pixel -> LPS mapping agrees with the server's LPS -> pixel.
    found = _locate(server, ct_case, cursor)
    axial = found["layout"]["axial"]
    assert found["axial"]["index"] == 31
    assert found["axial"]["col_px"] == pytest.approx(fx * axial["width_px"] - 0.5, abs=0.6)
    assert found["axial"]["row_px"] == pytest.approx(fy * axial["height_px"] - 0.5, abs=0.6)
    assert found["coronal"]["index"] == _index(page, "coronal")
    assert found["sagittal"]["index"] == _index(page, "sagittal")

    # Clicking the bone in 3D (navigate tool) moves the cursor and the slices to that surface point.
    click_surface(page, 0.5, 0.5)
    _wait_data(page, "[data-testid=cursor-lps]", "lps", differs=",".join(f"{v:.3f}" for v in cursor))
    found = _locate(server, ct_case, _cursor(page))
    assert found["axial"]["inside"] is True
    assert found["axial"]["index"] != 31
    _wait_data(page, "[data-testid=slice-view][data-plane=axial]", "index", equal=str(found["axial"]["index"]))
    assert page.evaluate("window.__trinity.cursor.position()") == pytest.approx(_cursor(page), abs=1e-3)

    # Another window: the images are fetched again.
    src = page.get_attribute(image, "src")
    page.select_option("[data-testid=slices-window]", "soft_tissue")
    page.wait_for_function("(old) => document.querySelector('[data-testid=slice-image-axial]').src != old", arg=src)

    # Nothing changes, nothing is drawn: the 3D view renders on demand.
    frames = page.evaluate("window.__trinity.viewport.frames")
    page.wait_for_timeout(500)
    assert page.evaluate("window.__trinity.viewport.frames") == frames


def test_cut_with_a_plane_gives_both_users_a_second_version_and_the_resected_piece(
    browser: Any, server: str, users: list[User], ct_case: str
) -> None:
    room = create_room(server, "e2e cut", ct_case)
    model_id = _build_model(server, ct_case, room)
    a, b = open_pair(browser, server, room, users)
    _wait_model_loaded(a.page, model_id)

    # The plane tool: press on the bone, drag sideways to tilt the plane so it cuts off a cap.
    a.page.keyboard.press("p")
    x, y = canvas_point(a.page, 0.5, 0.5)
    a.page.mouse.move(x, y)
    a.page.mouse.down()
    for step in range(1, 9):
        a.page.mouse.move(x + 10 * step, y)
    a.page.mouse.up()
    a.page.wait_for_selector("[data-testid=annotation-item][data-kind=plane]", timeout=5000)

    a.page.click("[data-testid=tab-design]")
    a.page.select_option("[data-testid=design-op]", "cut")
    a.page.wait_for_selector(f"[data-testid=design-input-mesh] option[value='{model_id}']", state="attached")
    assert "resected" in a.page.inner_text("[data-testid=design-form-cut]")
    a.page.click("[data-testid=design-run]")
    a.page.wait_for_selector("[data-testid=design-job][data-state=succeeded]", timeout=60_000)

    versions = f"[data-testid=design-model][data-id='{model_id}'] [data-testid=model-version]"
    for u in (a, b):
        u.page.click("[data-testid=tab-design]")
        u.page.wait_for_selector(f"{versions} option[value='2']", state="attached", timeout=10_000)
        assert u.page.locator(f"{versions} option").all_inner_texts() == ["v1", "v2"]
        assert u.page.locator(versions).input_value() == "2"
        u.page.wait_for_selector("[data-testid=design-model]:has-text('(resected)')")
    resected = b.page.get_attribute("[data-testid=design-model]:has-text('(resected)')", "data-id")
    _wait_model_loaded(b.page, resected)

    # Older versions stay selectable, for everyone.
    a.page.select_option(versions, "1")
    b.page.wait_for_function("(sel) => document.querySelector(sel).value === '1'", arg=versions)

    # A mesh uploaded from the Design tab becomes a model of the room too.
    a.page.set_input_files(
        "[data-testid=mesh-upload-input]", {"name": "plate.stl", "mimeType": "model/stl", "buffer": TETRAHEDRON_STL}
    )
    a.page.click("[data-testid=mesh-upload-submit]")
    a.page.wait_for_selector("[data-testid=mesh-upload-done]", timeout=15_000)
    b.page.wait_for_selector("[data-testid=design-model]:has-text('plate')", timeout=10_000)


def test_a_refused_file_shows_its_reason_as_text(browser: Any, server: str, users: list[User], ct_case: str) -> None:
    room = create_room(server, "e2e refused", ct_case)
    a = open_user(browser, server, SURGEON, room, {"width": 768, "height": 1024})  # tablet, portrait
    users.append(a)
    page = a.page
    page.click("[data-testid=tab-imaging]")
    page.wait_for_selector("[data-testid=imaging-case][data-case]")
    hostile_zip = zip_folder([], {XSS_NAME: b"a text file in a zip"})
    page.set_input_files(
        "[data-testid=imaging-upload-input]",
        [
            {"name": XSS_NAME, "mimeType": "text/plain", "buffer": b"not DICOM at all\n"},
            {"name": "hostile.zip", "mimeType": "application/zip", "buffer": hostile_zip},
        ],
    )
    page.click("[data-testid=imaging-upload-submit]")
    page.wait_for_selector("[data-testid=imaging-upload-job][data-state=succeeded]", timeout=60_000)
    report = page.wait_for_selector("[data-testid=ingest-report][data-rejected='2']", timeout=10_000)

    names = [n.inner_text() for n in report.query_selector_all("[data-testid=ingest-name]")]
    reasons = [r.inner_text() for r in report.query_selector_all("[data-testid=ingest-reason]")]
    assert f"hostile.zip:{XSS_NAME}" in names  # the entry's name, shown literally
    assert len(reasons) == 2
    assert all(r.startswith("rejected: ") and "DICOM" in r for r in reasons), reasons
    assert page.evaluate("window.__xss") is None
    assert page.locator("[data-testid=ingest-reports] img").count() == 0
