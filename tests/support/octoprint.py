"""A private real OctoPrint (from PyPI, in its own venv) with its Virtual Printer, on a free port.

The config is written before the first start (no first-run wizard, no online checks, no plugins that phone
home), a user is created with OctoPrint's CLI, and after start that user generates an application key
the way OctoPrint's settings page does (a password login, then `/api/plugin/appkeys` "generate"):
the per-user key the driver uses, since the global key is deprecated.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support.services import free_port, missing

OCTOPRINT_VERSION = "1.11.8"  # keep in step with .ci/services
VENV = Path(os.environ.get("TRINITY_OCTOPRINT_VENV", Path.home() / ".cache/trinity/octoprint-venv"))
HOW_TO_INSTALL = f"bash .ci/services (installs OctoPrint {OCTOPRINT_VERSION} into {VENV})"
BUILD_VOLUME_MM = (220.0, 215.0, 250.0)  # the printer profile's width, depth, height
STREAM_PATH = "/webcam/?action=stream"  # a relative camera URL, as OctoPi configures it
USERNAME = "trinity"

# Plugins that reach the internet or nag on first start; none is needed to drive a printer.
_DISABLED_PLUGINS = [
    "achievements",
    "announcements",
    "backup",
    "discovery",
    "errortracking",
    "firmware_check",
    "health_check",
    "pluginmanager",
    "softwareupdate",
    "tracking",
]


def _binary() -> Path:
    binary = VENV / "bin" / "octoprint"
    if not binary.exists():
        missing(f"OctoPrint {OCTOPRINT_VERSION} ({binary})", HOW_TO_INSTALL)
    return binary


def gcode(layers: int, moves_per_layer: int = 10, feed_mm_min: int = 1200) -> str:
    """A small FDM print: `;LAYER:n` markers and G1 moves. The Virtual Printer takes a tenth of each move's
    real time, so a 20 mm move at F1200 lasts 0.1 s: the feed rate sets how long the print runs."""
    lines = ["G21", "G90", "M82", "G28", "G92 E0"]
    extruded = 0.0
    for layer in range(layers):
        lines += [f";LAYER:{layer}", f"G1 Z{0.2 * (layer + 1):.2f} F600"]
        for move in range(moves_per_layer):
            extruded += 0.5
            x = 20 if move % 2 == 0 else 0  # only moves away from X0 cost time in the simulation
            lines.append(f"G1 X{x} Y{move} E{extruded:.2f} F{feed_mm_min}")
    lines.append("M84")
    return "\n".join(lines) + "\n"


class OctoPrintServer:
    """One OctoPrint process with its basedir under `workdir`; kill() and start() again keep the port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.basedir = workdir / "octoprint"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "octoprint.log"
        self.password = secrets.token_urlsafe(16)
        self.api_key = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def config(self) -> dict[str, Any]:
        return {
            "server": {"firstRun": False, "onlineCheck": {"enabled": False}, "pluginBlacklist": {"enabled": False}},
            "serial": {"port": "VIRTUAL", "autoconnect": False},
            "printerProfiles": {"default": "trinity"},
            "plugins": {
                "_disabled": _DISABLED_PLUGINS,
                # Its default injects resends at lines 100-115 of every print, which only slows the tests.
                "virtual_printer": {"enabled": True, "simulated_errors": []},
                "classicwebcam": {"_config_version": 1, "stream": STREAM_PATH},  # version set: no migration
            },
        }

    def profile(self) -> dict[str, Any]:
        width, depth, height = BUILD_VOLUME_MM
        xy, z, e = ({"speed": speed, "inverted": False} for speed in (6000, 200, 300))
        return {
            "id": "trinity",
            "name": "Trinity test FDM",
            "model": "Virtual",
            "color": "default",
            "heatedBed": True,
            "heatedChamber": False,
            "volume": {
                "width": width,
                "depth": depth,
                "height": height,
                "formFactor": "rectangular",
                "origin": "lowerleft",
                "custom_box": False,
            },
            "extruder": {
                "count": 1,
                "offsets": [[0.0, 0.0]],
                "nozzleDiameter": 0.4,
                "sharedNozzle": False,
                "defaultExtrusionLength": 5,
            },
            "axes": {"x": xy, "y": xy, "z": z, "e": e},
        }

    def _prepare(self, binary: Path) -> None:
        (self.basedir / "printerProfiles").mkdir(parents=True)
        # JSON is YAML: no YAML writer needed.
        (self.basedir / "config.yaml").write_text(json.dumps(self.config(), indent=2))
        (self.basedir / "printerProfiles" / "trinity.profile").write_text(json.dumps(self.profile(), indent=2))
        add_user = [str(binary), "--basedir", str(self.basedir), "user", "add", USERNAME]
        subprocess.run(
            [*add_user, "--password", self.password, "--group", "users"],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self, timeout_s: float = 60.0) -> OctoPrintServer:
        binary = _binary()
        if not self.basedir.exists():
            self._prepare(binary)
        args = [str(binary), "serve", "--basedir", str(self.basedir), "--host", "127.0.0.1", "--port", str(self.port)]
        if os.geteuid() == 0:
            args.append("--iknowwhatimdoing")  # OctoPrint refuses to run as root otherwise
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"OctoPrint exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                httpx.get(f"{self.url}/api/version", timeout=1)  # 403 without a key: up all the same
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            self.kill()
            raise TimeoutError(f"OctoPrint did not answer within {timeout_s} s: {self.log_tail()}")
        if not self.api_key:
            self.api_key = self._generate_app_key()
        return self

    def _generate_app_key(self) -> str:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            client.get("/")  # sets the CSRF cookie that cookie-authenticated POSTs must echo
            login = {"user": USERNAME, "pass": self.password, "remember": False}
            client.post("/api/login", json=login, headers=self._csrf(client)).raise_for_status()
            generate = {"command": "generate", "app": "Trinity"}
            response = client.post("/api/plugin/appkeys", json=generate, headers=self._csrf(client))
            response.raise_for_status()
            return str(response.json()["api_key"])

    @staticmethod
    def _csrf(client: httpx.Client) -> dict[str, str]:
        token = next((value for name, value in client.cookies.items() if name.startswith("csrf_token")), "")
        return {"X-CSRF-Token": token}

    def kill(self) -> None:
        """SIGKILL: the host vanishes mid-whatever, as when its machine loses power."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def freeze(self) -> None:
        """SIGSTOP: the host keeps its sockets open but stops answering, as a hung machine does."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    # --- REST helpers for test setup (the driver under test does not use these) ---

    def state_text(self) -> str:
        response = httpx.get(f"{self.url}/api/job", headers={"X-Api-Key": self.api_key}, timeout=10)
        return str(response.json()["state"])

    def settle(self, timeout_s: float = 30.0) -> None:
        """Wait until the last test's job has wound down; reopen the printer link after an injected error."""
        deadline = time.monotonic() + timeout_s
        while (text := self.state_text()) not in ("Operational", "Offline", "Closed"):
            if text.startswith(("Error", "Offline after error")):
                self.relink_printer(timeout_s)
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"OctoPrint still {text!r} after {timeout_s} s")
            time.sleep(0.1)

    def relink_printer(self, timeout_s: float = 30.0) -> None:
        """Reopen the virtual printer's link (after an injected error left it "Offline after error")."""
        headers = {"X-Api-Key": self.api_key}
        command = {"command": "connect", "port": "VIRTUAL"}
        httpx.post(f"{self.url}/api/connection", json=command, headers=headers, timeout=10).raise_for_status()
        deadline = time.monotonic() + timeout_s
        while self.state_text() != "Operational":
            if time.monotonic() > deadline:
                raise TimeoutError(f"virtual printer not Operational: {self.state_text()}")
            time.sleep(0.1)


@contextmanager
def octoprint_server(workdir: Path) -> Iterator[OctoPrintServer]:
    """Start a private OctoPrint for the duration of the block; killed at exit."""
    server = OctoPrintServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.kill()
