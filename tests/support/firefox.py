"""Debian's Firefox ESR (/usr/bin/firefox-esr, or TRINITY_FIREFOX) for the browser tests, headless, driven
over WebDriver BiDi (tests.support.bidi) with a fresh profile per launch.

Installed by ``bash .ci/services`` (apt-get install firefox-esr, with Mesa's EGL and software GL). WebGL in
headless Firefox needs ``MOZ_WEBGL_FORCE_EGL=1``: without it Firefox looks for a GLX display, finds none
and refuses every WebGL context; with it the 3D view renders on Mesa's llvmpipe.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.bidi import BidiSession, bidi_session

FIREFOX = os.environ.get("TRINITY_FIREFOX") or shutil.which("firefox-esr") or "/usr/bin/firefox-esr"
HOW_TO_INSTALL = (
    "apt-get install -y --no-install-recommends firefox-esr libegl-mesa0 libgl1-mesa-dri (bash .ci/services)"
)
LISTENING = re.compile(rb"WebDriver BiDi listening on (ws://\S+)")
# Nothing of Firefox's own traffic on a closed network: no first-run pages, updates, telemetry, studies.
PREFS: dict[str, bool | int | str] = {
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.aboutwelcome.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.disabledForTesting": True,
    "app.normandy.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "extensions.update.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "webgl.force-enabled": True,
}
ENV = {"MOZ_WEBGL_FORCE_EGL": "1", "MOZ_CRASHREPORTER_DISABLE": "1"}


def write_profile(folder: Path) -> None:
    """A fresh profile: only PREFS in its user.js (JSON literals are the prefs file's syntax too)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"user_pref({json.dumps(name)}, {json.dumps(value)});" for name, value in PREFS.items()]
    (folder / "user.js").write_text("\n".join(lines) + "\n")


@contextmanager
def firefox(workdir: Path, timeout_s: float = 30.0) -> Iterator[BidiSession]:
    """A headless Firefox with a fresh profile under `workdir`, its output in workdir/firefox.log; yields a
    BiDi session on it and closes the browser afterwards."""
    profile = workdir / "profile"
    write_profile(profile)
    log_path = workdir / "firefox.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [FIREFOX, "--headless", "--no-remote", "--remote-debugging-port=0", "--profile", str(profile)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **ENV},
        )
    try:
        with bidi_session(_wait_listening(proc, log_path, timeout_s) + "/session") as session:
            yield session
    finally:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait_listening(proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = LISTENING.search(log_path.read_bytes())
        if found:
            return found.group(1).decode()
        if proc.poll() is not None:
            raise RuntimeError(f"Firefox exited with {proc.returncode}: {log_path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    raise TimeoutError(f"Firefox did not open WebDriver BiDi within {timeout_s} s: {log_path.read_text()[-2000:]}")
