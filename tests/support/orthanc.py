"""A private real Orthanc PACS (with its DICOMweb plugin) on free ports, for the PACS and SCP tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support.services import free_port, missing

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
HOW_TO_INSTALL = "apt-get install orthanc orthanc-dicomweb (bash .ci/services)"


def _orthanc_binary() -> str:
    # The Debian package puts it in /usr/sbin, which is not on every user's PATH.
    binary = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    if not binary:
        missing("Orthanc", HOW_TO_INSTALL)
    if not DICOMWEB_PLUGIN.exists():
        missing(f"Orthanc's DICOMweb plugin ({DICOMWEB_PLUGIN})", HOW_TO_INSTALL)
    return str(binary)


class OrthancServer:
    """One Orthanc process with its storage, index and log under `workdir`.

    `modalities` maps a name to (AE title, host, port): the DICOM peers Orthanc may C-STORE to.
    """

    def __init__(
        self, workdir: Path, *, aet: str = "TESTPACS", modalities: Mapping[str, tuple[str, str, int]] | None = None
    ) -> None:
        self.workdir = workdir
        self.aet = aet
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.dicomweb_url = f"{self.url}/dicom-web"
        self.modalities = dict(modalities or {})
        self.log_path = workdir / "orthanc.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def config(self) -> dict[str, Any]:
        return {
            "Name": "trinity-test",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "SaveJobs": False,
            "HttpDescribeErrors": True,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DicomModalities": {name: list(peer) for name, peer in self.modalities.items()},
        }

    def start(self, timeout_s: float = 30.0) -> OrthancServer:
        binary = _orthanc_binary()
        config_path = self.workdir / "orthanc.json"
        config_path.write_text(json.dumps(self.config(), indent=2))
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([binary, str(config_path)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/system", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"Orthanc did not answer /system within {timeout_s} s: {self.log_tail()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    # --- REST helpers used by the tests ---

    def upload(self, dicom_file: bytes | Path) -> dict[str, Any]:
        """POST one DICOM file to /instances; returns Orthanc's answer (ID, ParentStudy, Status...)."""
        body = dicom_file.read_bytes() if isinstance(dicom_file, Path) else dicom_file
        response = httpx.post(f"{self.url}/instances", content=body, timeout=30)
        response.raise_for_status()
        return dict(response.json())

    def set_modality(self, name: str, aet: str, host: str, port: int) -> None:
        response = httpx.put(f"{self.url}/modalities/{name}", json={"AET": aet, "Host": host, "Port": port}, timeout=30)
        response.raise_for_status()

    def store_to_modality(self, name: str, resource_ids: list[str]) -> httpx.Response:
        """Ask Orthanc to C-STORE resources to a modality and wait for the outcome (not raised)."""
        return httpx.post(
            f"{self.url}/modalities/{name}/store",
            json={"Resources": resource_ids, "Synchronous": True},
            timeout=60,
        )


@contextmanager
def orthanc_server(
    workdir: Path, *, aet: str = "TESTPACS", modalities: Mapping[str, tuple[str, str, int]] | None = None
) -> Iterator[OrthancServer]:
    """Start a private Orthanc for the duration of the block; killed at exit."""
    server = OrthancServer(workdir, aet=aet, modalities=modalities)
    server.start()
    try:
        yield server
    finally:
        server.stop()
