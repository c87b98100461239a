"""End-to-end: the Imaging tab's other sources, in Chromium, against a real server.

A label map segmented elsewhere (written here with SimpleITK on the voxel grid of a synthetic CT the test
ingests, as 3D Slicer exports one) is uploaded from the Imaging tab and becomes a model that both users
see, where the CT has that structure; what the server refuses (no PACS configured, a face budget over
its limit, a label the file does not hold) reaches the user in the server's words. The PACS pull against
a real Orthanc is in test_pacs_browser.py. Fixtures in conftest.py.
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.browser import SURGEON, User, auth, create_room, open_pair, open_user
from tests.support.browser_imaging import create_case, sphere_label_map, upload_series, volume_layout
from tests.support.phantoms import Grid, default_phantom, write_series

pytestmark = pytest.mark.browser

TUMOUR = default_phantom(Grid().centre_lps).shapes[0]  # the phantom's sphere: 7 mm radius
TUMOUR_LABEL = 2


@pytest.fixture(scope="module")
def ct_case(server: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A case holding the default synthetic CT series with its volume, ingested over REST."""
    case_id = create_case(server, "E2E-LABELMAP")
    upload_series(server, case_id, write_series(tmp_path_factory.mktemp("ct") / "series").paths)
    return case_id


@pytest.fixture(scope="module")
def label_map(server: str, ct_case: str) -> bytes:
    """The tumour segmented on the CT's own voxel grid (label 2), and a slab of label 1 beside it."""
    return sphere_label_map(volume_layout(server, ct_case), TUMOUR.centre_lps, TUMOUR.radius_mm, TUMOUR_LABEL)


def _open_imaging(user: User) -> None:
    """The Imaging tab with its folded sources (PACS, label map) unfolded."""
    user.page.click("[data-testid=tab-imaging]")
    user.page.wait_for_selector("[data-testid=imaging-case][data-case]")
    for section in ("pacs-section", "labelmap-section"):
        user.page.click(f"[data-testid={section}] > summary")
    user.page.wait_for_selector("[data-testid=labelmap-form]")


def _choose_label_map(user: User, data: bytes) -> None:
    user.page.set_input_files(
        "[data-testid=labelmap-upload-input]",
        {"name": "Segmentation-label.nrrd", "mimeType": "application/octet-stream", "buffer": data},
    )


def test_a_label_map_from_slicer_becomes_a_model_both_users_see_where_the_ct_has_it(
    browser: Any, server: str, users: list[User], ct_case: str, label_map: bytes
) -> None:
    room = create_room(server, "e2e label map", ct_case)
    a, b = open_pair(browser, server, room, users)
    _open_imaging(a)

    a.page.fill("[data-testid=labelmap-name]", "Slicer tumour")
    a.page.fill("[data-testid=labelmap-label]", str(TUMOUR_LABEL))
    _choose_label_map(a, label_map)
    a.page.click("[data-testid=labelmap-upload-submit]")
    job = a.page.wait_for_selector("[data-testid=labelmap-job][data-state=succeeded]", timeout=60_000)
    job_id = job.get_attribute("data-job")

    # The other user gets the model in their scene and 3D view, and the job in their jobs panel.
    b.page.click("[data-testid=tab-scene]")
    item = b.page.wait_for_selector("[data-testid=model-item]:has-text('Slicer tumour')", timeout=10_000)
    model_id = item.get_attribute("data-id")
    b.page.wait_for_function("id => window.__trinity.models.loadState(id) === 'loaded'", arg=model_id, timeout=15_000)
    b.page.click("[data-testid=tab-jobs]")
    b.page.wait_for_selector("[data-testid=job-item][data-kind='imaging.labelmap_model'][data-state=succeeded]")

    # Only label 2, in the CT's patient coordinates: the sphere of the phantom, not the slab of label 1.
    view = httpx.get(f"{server}/api/jobs/{job_id}", headers=auth(server, SURGEON)).json()
    meta = view["result"]["meta"]
    centre, radius = np.asarray(TUMOUR.centre_lps), TUMOUR.radius_mm
    spacing = max(volume_layout(server, ct_case)["spacing_mm"])
    assert meta["watertight"] and meta["components"] == 1
    assert np.allclose(meta["bbox_min_lps"], centre - radius, atol=spacing)
    assert np.allclose(meta["bbox_max_lps"], centre + radius, atol=spacing)


def test_what_the_server_refuses_is_shown_in_its_words(
    browser: Any, server: str, users: list[User], ct_case: str, label_map: bytes
) -> None:
    room = create_room(server, "e2e refusals", ct_case)
    a = open_user(browser, server, SURGEON, room, {"width": 820, "height": 1180})  # a tablet, portrait
    users.append(a)
    page = a.page
    _open_imaging(a)

    # This server has no PACS: the search says so, and how to configure one.
    page.click("[data-testid=pacs-search]")
    error = page.wait_for_selector("[data-testid=pacs-error]:not([hidden])")
    assert "no PACS is configured here" in error.inner_text() and "TRINITY_PACS_URL" in error.inner_text()

    # A face budget over the server's limit: refused before any work, with the limit.
    page.fill("[data-testid=labelmap-faces]", "99000000")
    _choose_label_map(a, label_map)
    page.click("[data-testid=labelmap-upload-submit]")
    error = page.wait_for_selector("[data-testid=labelmap-upload-error]:not([hidden])")
    assert "target_faces is above the limit" in error.inner_text()

    # A label the file does not hold: the job fails, and says which labels there are.
    page.fill("[data-testid=labelmap-faces]", "")
    page.fill("[data-testid=labelmap-label]", "9")
    _choose_label_map(a, label_map)
    page.click("[data-testid=labelmap-upload-submit]")
    failed = page.wait_for_selector("[data-testid=labelmap-job][data-state=failed]", timeout=60_000)
    assert "label 9 not in the label map" in failed.inner_text()
    assert "values present: [0, 1, 2]" in failed.inner_text()
    page.click("[data-testid=tab-jobs]")
    page.wait_for_selector("[data-testid=job-item][data-kind='imaging.labelmap_model'][data-state=failed]")

    # And what the form itself can tell before sending.
    page.click("[data-testid=tab-imaging]")
    page.fill("[data-testid=labelmap-label]", "-1")
    _choose_label_map(a, label_map)
    page.click("[data-testid=labelmap-upload-submit]")
    page.wait_for_selector("[data-testid=labelmap-upload-error]:has-text('whole number')")
