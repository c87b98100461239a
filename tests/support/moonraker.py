"""A private real Moonraker (from PyPI, in its own venv) on a free port, without Klipper.

Its config points at a Klippy socket that does not exist, so files, the job queue, history and webcams
work while printing is refused. Authorization is on with no trusted clients: the tests use Moonraker's
API key, read from its database the way Moonraker's own `scripts/fetch-apikey.sh` does.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support.services import free_port, missing

MOONRAKER_VERSION = "0.11.0"  # keep in step with .ci/services
VENV = Path(os.environ.get("TRINITY_MOONRAKER_VENV", Path.home() / ".cache/trinity/moonraker-venv"))
HOW_TO_INSTALL = f"bash .ci/services (installs Moonraker {MOONRAKER_VERSION} into {VENV})"
STREAM_PATH = "/webcam/?action=stream"


def _binary() -> Path:
    binary = VENV / "bin" / "moonraker"
    if not binary.exists():
        missing(f"Moonraker {MOONRAKER_VERSION} ({binary})", HOW_TO_INSTALL)
    return binary


class MoonrakerServer:
    """One Moonraker process with its data path under `workdir`; kill() and start() again keep the port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data_path = workdir / "moonraker-data"
        self.config_path = workdir / "moonraker.conf"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "moonraker.log"
        self.api_key = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        return f"""\
[server]
host: 127.0.0.1
port: {self.port}
# Nothing listens here: Moonraker runs as it does while Klipper is down.
klippy_uds_address: {self.workdir / "klippy.sock"}

[machine]
provider: none
validate_service: False
validate_config: False

[authorization]
enable_api_key: True

[announcements]
# The announcement feeds are fetched from the internet.
enable_moonlight: False

[job_queue]
load_on_startup: False

[history]

[webcam printer_cam]
service: mjpegstreamer
stream_url: {STREAM_PATH}
"""

    def start(self, timeout_s: float = 60.0) -> MoonrakerServer:
        binary = _binary()
        self.config_path.write_text(self.config())
        # Present, so Moonraker does not fetch the USB id list from the internet at start.
        (self.data_path / "misc").mkdir(parents=True, exist_ok=True)
        (self.data_path / "misc" / "usb.ids").touch()
        args = [str(binary), "-d", str(self.data_path), "-c", str(self.config_path), "-n"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Moonraker exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                httpx.get(f"{self.url}/server/info", timeout=1)  # 401 without the key: up all the same
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            self.kill()
            raise TimeoutError(f"Moonraker did not answer within {timeout_s} s: {self.log_tail()}")
        self.api_key = self._read_api_key()
        return self

    def _read_api_key(self) -> str:
        database = self.data_path / "database" / "moonraker-sql.db"
        with closing(sqlite3.connect(database)) as db:
            row = db.execute("SELECT password FROM authorized_users WHERE username = '_API_KEY_USER_'").fetchone()
        if row is None:
            raise RuntimeError(f"no API key in {database}: {self.log_tail()}")
        return str(row[0])

    def record_past_jobs(self, jobs: list[dict[str, Any]]) -> None:
        """Write jobs into the (stopped) Moonraker's own history table, as a Moonraker that printed them with
        Klipper would have left them; the next start reads them (and marks one still "in_progress", the
        print it died during, "interrupted"). Keys: filename, status, start_time, end_time, print_duration."""
        assert self.proc is None or self.proc.poll() is not None, "stop Moonraker first"
        rows = [
            (
                job["filename"],
                job["status"],
                job["start_time"],
                job.get("end_time"),
                job.get("print_duration", 0.0),
                job.get("total_duration", job.get("print_duration", 0.0)),
                job.get("filament_used", 0.0),
            )
            for job in jobs
        ]
        with closing(sqlite3.connect(self.data_path / "database" / "moonraker-sql.db")) as db, db:
            db.executemany(
                "INSERT INTO job_history (user, filename, status, start_time, end_time, print_duration,"
                " total_duration, filament_used, metadata, auxiliary_data, instance_id)"
                " VALUES ('_TRUSTED_USER_', ?, ?, ?, ?, ?, ?, ?, '{}', '[]', 'default')",
                rows,
            )

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


@contextmanager
def moonraker_server(workdir: Path) -> Iterator[MoonrakerServer]:
    """Start a private Moonraker for the duration of the block; killed at exit."""
    server = MoonrakerServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.kill()
