"""Regenerate the screenshots in docs/img/ (`make screenshots`).

Starts a demo server (`python -m server.cli serve --demo`) on a free port with its data in a temporary
directory, drives Debian's Chromium (/usr/bin/chromium, or TRINITY_CHROMIUM) with the Python
playwright package (never `playwright install`), and saves:

    docs/img/login.png          the login page
    docs/img/rooms.png          "My rooms"
    docs/img/room.png           the demo room with annotations of every kind, the annotations panel open
    docs/img/room-follower.png  the second user's view, following the presenter, chat open
    docs/img/room-tablet.png    the room on a tablet in portrait (the side panel moves below the view)
    docs/img/room-imaging.png   a synthetic CT in the demo case: its bone model, the slice viewer with the
                                linked cursor, the Imaging tab (series, ingest report)
    docs/img/room-design.png    the Design tab: the model's versions and the cut form, after a cut

Needs the built web client (`make web`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: make the repo importable
from tests.support.imaging_flow import zip_folder  # noqa: E402
from tests.support.phantoms import write_series  # noqa: E402
from tests.support.process import ServerProcess  # noqa: E402

OUT = ROOT / "docs" / "img"
DIST = ROOT / "web" / "dist" / "index.html"
CHROMIUM = os.environ.get("TRINITY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]
SURGEON = ("surgeon", "surgeon-demo-pass")
ENGINEER = ("engineer", "engineer-demo-pass")
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
TABLET: ViewportSize = {"width": 820, "height": 1180}  # a 10.9" tablet in portrait
MAX_PNG_BYTES = 400_000
PROBLEMS: list[str] = []  # page errors and oversized images: reported, and the exit status is 1


@contextlib.contextmanager
def demo_server() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="trinity-screenshots-") as data:
        env = {"TRINITY_DATA_DIR": data, "TRINITY_DEMO": "true"}
        process = ServerProcess(env, Path(data) / "server.log").start()
        try:
            yield process.base_url
        finally:
            process.stop()


def demo_room_id(base: str) -> str:
    r = httpx.post(f"{base}/api/auth/login", json={"username": SURGEON[0], "password": SURGEON[1]})
    r.raise_for_status()
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    rooms = httpx.get(f"{base}/api/rooms", headers=headers).json()
    return str(next(room["id"] for room in rooms if room["title"].startswith("Demo")))


def seed_ct(base: str, room: str) -> None:
    """A synthetic CT (tests.support.phantoms) uploaded into the demo room's case, and its bone model."""
    r = httpx.post(f"{base}/api/auth/login", json={"username": SURGEON[0], "password": SURGEON[1]})
    r.raise_for_status()
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    case = httpx.get(f"{base}/api/rooms/{room}", headers=headers).json()["case_id"]
    with tempfile.TemporaryDirectory() as folder:
        written = write_series(Path(folder) / "series", series_description="Phantom CT, bone kernel")
        study = zip_folder(written.paths, {"study/README.txt": b"the scanner's export notes"})
    files = [("files", ("study.zip", study, "application/zip"))]
    upload = httpx.post(
        f"{base}/api/cases/{case}/imaging/uploads", params={"room_id": room}, files=files, headers=headers, timeout=60
    )
    upload.raise_for_status()
    wait_job(base, headers, upload.json()["job"]["id"])
    series = httpx.get(f"{base}/api/cases/{case}/imaging/series", headers=headers).json()[0]["id"]
    body = {"name": "Mandible phantom", "preset": "bone", "keep": "all", "room_id": room}
    model = httpx.post(f"{base}/api/cases/{case}/imaging/series/{series}/models", json=body, headers=headers)
    model.raise_for_status()
    wait_job(base, headers, model.json()["id"])


def wait_job(base: str, headers: dict[str, str], job_id: str) -> None:
    for _ in range(1200):
        state = httpx.get(f"{base}/api/jobs/{job_id}", headers=headers).json()["state"]
        if state == "succeeded":
            return
        if state in ("failed", "cancelled"):
            raise RuntimeError(f"job {job_id} {state}")
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} did not finish")


def imaging_and_design(browser: Browser, base: str) -> None:
    """In a new room on the demo case (no annotations of the placeholder in the way): the slice viewer over
    the model, then a cut from the Design tab with a plane placed on the model."""
    r = httpx.post(f"{base}/api/auth/login", json={"username": SURGEON[0], "password": SURGEON[1]})
    r.raise_for_status()
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    case = httpx.get(f"{base}/api/rooms/{demo_room_id(base)}", headers=headers).json()["case_id"]
    body = {"title": "CT planning on the demo case", "case_id": case}
    room = httpx.post(f"{base}/api/rooms", json=body, headers=headers).json()["id"]
    seed_ct(base, room)
    page = open_room(browser, base, room, SURGEON)
    page.wait_for_selector("[data-testid=placeholder-label]", state="hidden", timeout=15_000)
    page.click("[data-testid=tab-imaging]")
    page.click("[data-testid=series-view-slices]")
    page.wait_for_selector("[data-testid=slice-image-sagittal][data-index]")
    box = page.locator("[data-testid=slice-frame-axial]").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.42)
    page.wait_for_timeout(500)  # the other planes' images load
    shot(page, "room-imaging.png")
    page.click("[data-testid=slices-close]")

    # A plane pressed on the model (wherever the view shows it) and tilted, then a cut along it.
    planes = page.locator("[data-testid=annotation-item][data-kind=plane]").count()
    x, y = page.evaluate(SURFACE_POINT)
    page.locator("[data-testid=viewport-canvas]").focus()
    page.keyboard.press("p")
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(x + 6 * i, y)
    page.mouse.up()
    page.wait_for_function(
        "(n) => document.querySelectorAll('[data-testid=annotation-item][data-kind=plane]').length > n", arg=planes
    )
    page.keyboard.press("Escape")
    page.click("[data-testid=tab-design]")
    page.select_option("[data-testid=design-op]", "cut")
    page.click("[data-testid=design-run]")
    page.wait_for_selector("[data-testid=design-job][data-state=succeeded]", timeout=60_000)
    page.wait_for_selector("[data-testid=design-model]:has-text('(resected)')")
    page.wait_for_timeout(800)  # the new version and the piece load
    orbit(page, 170, -30)  # the plane seen from its side, the cut face and the piece beside it
    shot(page, "room-design.png")
    page.context.close()


# The page coordinates of a point of the 3D view that shows a model's surface (searched from the centre out).
# Two animation frames first: the view may just have been resized (slices closed) and not yet re-laid out.
SURFACE_POINT = """async () => { await new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)));
    const v = window.__trinity.viewport; const r = v.canvas.getBoundingClientRect();
    for (let d = 0; d < 0.45; d += 0.02) for (const [fx, fy] of [[0.5 + d, 0.5], [0.5 - d, 0.5], [0.5, 0.5 + d],
        [0.5, 0.5 - d]]) { const x = r.left + r.width * fx, y = r.top + r.height * fy;
        if (v.pick(x, y)?.modelId) return [x, y]; }
    throw new Error("no model surface in view"); }"""


def login(page: Page, who: tuple[str, str]) -> None:
    page.fill("[data-testid=login-username]", who[0])
    page.fill("[data-testid=login-password]", who[1])
    page.click("[data-testid=login-submit]")


def wait_online(page: Page) -> None:
    page.wait_for_selector("[data-testid=connection-status].online", timeout=15_000)


def new_page(browser: Browser, viewport: ViewportSize = DESKTOP, **context_args: Any) -> Page:
    page = browser.new_context(viewport=viewport, **context_args).new_page()
    page.on("pageerror", lambda e: PROBLEMS.append(f"page error: {e}"))
    return page


def open_room(browser: Browser, base: str, room: str, who: tuple[str, str], **context_args: Any) -> Page:
    page = new_page(browser, **context_args)
    page.goto(f"{base}/#/rooms/{room}")  # not logged in yet: the app asks, then comes back to the room
    login(page, who)
    wait_online(page)
    return page


def click_at(page: Page, fx: float, fy: float) -> None:
    box = page.locator("[data-testid=viewport-canvas]").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)


def annotate(page: Page, key: str, *points: tuple[float, float], kind: str, label: str | None = None) -> None:
    """Pick a tool by its shortcut, click the surface at the given fractions of the view, wait for the
    annotation to be stored, and optionally rename it."""
    before = page.locator(f"[data-testid=annotation-item][data-kind={kind}]").count()
    page.locator("[data-testid=viewport-canvas]").focus()
    page.keyboard.press(key)
    for fx, fy in points:
        click_at(page, fx, fy)
    page.wait_for_function(
        "([k, n]) => document.querySelectorAll(`[data-testid=annotation-item][data-kind=${k}]`).length > n",
        arg=[kind, before],
        timeout=5000,
    )
    if label:
        rename(page, kind, label)


def rename(page: Page, kind: str, label: str) -> None:
    """Rename the newest annotation of this kind from its row in the annotations panel."""
    row = page.locator(f"[data-testid=annotation-item][data-kind={kind}]").last
    row.locator("[data-testid=annotation-edit]").click()
    field = page.locator("[data-testid=annotation-label-input]")
    field.fill(label)
    field.press("Enter")
    page.wait_for_selector(f"[data-testid=annotation-label]:has-text({label!r})", timeout=5000)


def note(page: Page, at: tuple[float, float], text: str) -> None:
    page.locator("[data-testid=viewport-canvas]").focus()
    page.keyboard.press("n")
    page.fill("[data-testid=note-text]", text)
    click_at(page, *at)
    page.wait_for_selector(f"[data-testid=annotation-item][data-kind=note]:has-text({text!r})", timeout=5000)


def cutting_plane(page: Page, at: tuple[float, float], tilt_px: float, label: str) -> None:
    """A plane tangent to the surface where pressed, tilted by dragging (0.01 rad per pixel)."""
    page.locator("[data-testid=viewport-canvas]").focus()
    page.keyboard.press("p")
    box = page.locator("[data-testid=viewport-canvas]").bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] * at[0], box["y"] + box["height"] * at[1]
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(x, y + tilt_px * i / 10)
    page.mouse.up()
    page.wait_for_selector("[data-testid=annotation-item][data-kind=plane]", timeout=5000)
    rename(page, "plane", label)


def chat(page: Page, text: str) -> None:
    page.click("[data-testid=tab-chat]")
    page.fill("[data-testid=chat-input]", text)
    page.press("[data-testid=chat-input]", "Enter")
    page.wait_for_selector(f"[data-testid=chat-message]:has-text({text!r})", timeout=5000)


def orbit(page: Page, dx: float, dy: float, steps: int = 12) -> None:
    box = page.locator("[data-testid=viewport-canvas]").bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(1, steps + 1):
        page.mouse.move(x + dx * i / steps, y + dy * i / steps)
    page.mouse.up()
    page.wait_for_timeout(1000)  # damping settles, followers glide


def shot(page: Page, name: str) -> None:
    page.mouse.move(0, 0)  # no hover highlights
    page.wait_for_timeout(400)
    path = OUT / name
    page.screenshot(path=str(path), animations="disabled", caret="hide")
    size = path.stat().st_size
    print(f"{path.relative_to(ROOT)}  {size // 1024} kB")
    if size > MAX_PNG_BYTES:
        PROBLEMS.append(f"{name} is {size} bytes, over {MAX_PNG_BYTES}")


def main() -> int:
    if not DIST.exists():
        print("web/dist is missing: run `make web` first", file=sys.stderr)
        return 1
    if not Path(CHROMIUM).exists():
        print(f"no Chromium at {CHROMIUM}: apt-get install chromium (never `playwright install`)", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    with demo_server() as base, sync_playwright() as p:
        room = demo_room_id(base)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # Login and the rooms list, as the surgeon sees them.
            page = new_page(browser)
            page.goto(f"{base}/#/login")
            page.wait_for_selector("[data-testid=login-form]")
            page.fill("[data-testid=login-username]", SURGEON[0])
            shot(page, "login.png")
            page.fill("[data-testid=login-password]", SURGEON[1])
            page.click("[data-testid=login-submit]")
            page.wait_for_selector("[data-testid=room-item]")
            page.fill("[data-testid=room-create-title]", "Case 12: fibula flap planning")
            page.click("[data-testid=room-create]")
            wait_online(page)
            page.goto(f"{base}/#/rooms")
            page.wait_for_selector("[data-testid=room-item] >> nth=1")
            shot(page, "rooms.png")
            page.context.close()

            surgeon = open_room(browser, base, room, SURGEON)
            engineer = open_room(browser, base, room, ENGINEER)

            # The placeholder bone stands upright in the middle of the view: a head at the top (y 0.12-0.28
            # of the view), the shaft, a head at the bottom (0.62-0.8).
            annotate(surgeon, "m", (0.44, 0.2), kind="marker", label="Osteotomy start")
            note(surgeon, (0.555, 0.23), "Check the mental nerve here")
            annotate(surgeon, "d", (0.475, 0.33), (0.475, 0.56), kind="distance", label="Resection length")
            annotate(surgeon, "a", (0.57, 0.17), (0.52, 0.45), (0.55, 0.72), kind="angle", label="Gonial angle")
            annotate(surgeon, "t", (0.44, 0.74), (0.55, 0.69), kind="trajectory", label="Screw 1")
            cutting_plane(surgeon, (0.5, 0.62), tilt_px=140, label="Cutting plane")
            surgeon.keyboard.press("Escape")

            chat(surgeon, "Resection margins as planned: 10 mm either side of the lesion.")
            chat(engineer, "Agreed. I'll prepare the cutting guide from the plane.")
            chat(surgeon, "Screw 1 looks long to me: can you check its trajectory against the nerve?")

            surgeon.click("[data-testid=presenter-button]")
            engineer.wait_for_selector("[data-testid=presenter-status]:has-text('is presenting')", timeout=5000)
            orbit(surgeon, 100, 45)
            engineer.wait_for_selector("[data-testid=follow-badge]:visible", timeout=5000)

            surgeon.click("[data-testid=tab-annotations]")
            surgeon.locator("[data-testid=annotation-item][data-kind=distance]").click()
            shot(surgeon, "room.png")
            engineer.click("[data-testid=tab-chat]")
            engineer.wait_for_timeout(1000)  # the follower's camera has glided to the presenter's
            shot(engineer, "room-follower.png")

            tablet = new_page(browser, TABLET, is_mobile=True, has_touch=True, device_scale_factor=1)
            tablet.goto(f"{base}/#/rooms/{room}")
            login(tablet, ENGINEER)
            wait_online(tablet)
            tablet.click("[data-testid=tab-annotations]")
            tablet.wait_for_timeout(1000)
            shot(tablet, "room-tablet.png")
            tablet.context.close()

            imaging_and_design(browser, base)
        finally:
            browser.close()
    for problem in PROBLEMS:
        print(problem, file=sys.stderr)
    return 1 if PROBLEMS else 0


if __name__ == "__main__":
    sys.exit(main())
