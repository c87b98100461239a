"""A printer behind OctoPrint (1.11): its REST API for commands and state, its push channel for live events.

Authentication is a per-user application key (OctoPrint deprecated the global key): REST calls carry it
in `X-Api-Key`; the push channel (`/sockjs/websocket`, spoken as a raw websocket) is authenticated with a
passive login session, `POST /api/login {"passive": true}` → `{"auth": "name:session"}`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from server.printing.drivers.base import (
    BuildVolume,
    PrinterDriver,
    PrinterRejected,
    PrinterState,
    PrinterStatus,
)
from server.printing.drivers.gcode_layers import LayerIndex
from server.printing.drivers.host_link import EventHub, EventSubscription, HostTimeouts, PushLoop, call
from server.printing.drivers.octoprint_events import OctoPrintMonitor, build_status, printer_state

log = logging.getLogger(__name__)

# State texts while OctoPrint is still opening the serial link (octoprint.util.comm).
_LINKING = ("opening serial", "detecting", "connecting")
# The printer link is down without an error: safe to (re)open it. After an error it stays down for a person.
_UNLINKED = ("offline", "closed")


class OctoPrintDriver:
    """One printer on one OctoPrint host.

    `port` is the serial port to open when the printer link is down ("VIRTUAL" for OctoPrint's virtual
    printer; None lets OctoPrint use its own preference). `webcam_urls` add to the cameras OctoPrint knows.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        port: str | None = None,
        timeouts: HostTimeouts | None = None,
        webcam_urls: Sequence[str] = (),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._port = port
        self._timeouts = timeouts or HostTimeouts()
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers={"X-Api-Key": api_key}, timeout=self._timeouts.request_s
        )
        self._layers: dict[str, LayerIndex] = {}
        self._monitor = OctoPrintMonitor(self._layers.get)
        self._hub = EventHub()
        self._push = PushLoop(self._open_push, self._on_push, self._on_host_down, self._on_host_up, self._timeouts)
        self._cameras: list[str] = [urljoin(self.base_url + "/", url) for url in webcam_urls]
        self._closed = False

    # --- session ---

    async def connect(self) -> None:
        if self._closed:
            raise RuntimeError("this driver was closed; make a new one")
        if self._push.running:
            return
        await call(self._http, "GET", "/api/version")  # a wrong key answers 403 here: PrinterRejected
        await self._link_printer()
        self._cameras = sorted({*self._cameras, *await self._host_cameras()})
        await self._push.start()

    async def close(self) -> None:
        self._closed = True
        await self._push.close()
        self._hub.close()
        await self._http.aclose()

    def events(self) -> EventSubscription:
        return self._hub.subscribe()

    def camera_urls(self) -> list[str]:
        return list(self._cameras)

    # --- state ---

    async def status(self) -> PrinterStatus:
        job, printer = await asyncio.gather(self._get_json("/api/job"), self._printer_or_none())
        state = (printer or {}).get("state") or {}
        return build_status(
            text=str(job.get("state") or state.get("text") or "Offline"),
            flags=state.get("flags"),
            error=job.get("error") or state.get("error") or None,
            job_file=((job.get("job") or {}).get("file") or {}).get("path"),
            progress=job.get("progress") or {},
            temps=(printer or {}).get("temperature") or {},
            layer_index=self._layers.get,
        )

    async def build_volume(self) -> BuildVolume | None:
        profiles = (await self._get_json("/api/printerprofiles")).get("profiles") or {}
        chosen = next((p for p in profiles.values() if p.get("current")), None)
        chosen = chosen or next((p for p in profiles.values() if p.get("default")), None)
        volume = (chosen or {}).get("volume")
        if not volume:
            return None
        # A circular bed's "width" is its diameter; the box around it is what preflight checks against.
        return BuildVolume(float(volume["width"]), float(volume["depth"]), float(volume["height"]))

    # --- jobs ---

    async def upload(self, path: Path, remote_name: str) -> str:
        index = await asyncio.to_thread(LayerIndex.from_file, path)
        handle = await asyncio.to_thread(path.open, "rb")
        try:
            response = await call(
                self._http,
                "POST",
                "/api/files/local",
                files={"file": (remote_name, handle, "application/octet-stream")},
                timeout=self._timeouts.upload_s,
            )
        finally:
            handle.close()
        # OctoPrint may sanitize the name (spaces, odd characters): what it says is the name from now on.
        stored = str(response.json()["files"]["local"]["path"])
        self._layers[stored] = index
        return stored

    async def start(self, remote_name: str) -> None:
        # Select and print in one call; 409 when the printer is not operational or already busy.
        select = {"command": "select", "print": True}
        await call(self._http, "POST", f"/api/files/local/{quote(remote_name)}", json=select)

    async def pause(self) -> None:
        await call(self._http, "POST", "/api/job", json={"command": "pause", "action": "pause"})

    async def resume(self) -> None:
        await call(self._http, "POST", "/api/job", json={"command": "pause", "action": "resume"})

    async def cancel(self) -> None:
        await call(self._http, "POST", "/api/job", json={"command": "cancel"})

    async def send_commands(self, commands: Sequence[str]) -> None:
        """Raw G-code (or the virtual printer's `!!DEBUG:` commands) to the printer, as OctoPrint's terminal does."""
        await call(self._http, "POST", "/api/printer/command", json={"commands": list(commands)})

    # --- helpers ---

    async def _get_json(self, path: str) -> dict[str, Any]:
        return dict((await call(self._http, "GET", path)).json())

    async def _printer_or_none(self) -> dict[str, Any] | None:
        try:
            return await self._get_json("/api/printer")
        except PrinterRejected:  # 409 while the printer is not operational: no flags or temperatures then
            return None

    async def _state_text(self) -> str:
        return str((await self._get_json("/api/job")).get("state") or "Offline")

    async def _link_printer(self) -> None:
        """Open the serial link when it is simply down, and wait until the printer answers or fails."""
        text = await self._state_text()
        if not text.lower().startswith(_UNLINKED) or printer_state(text) is PrinterState.ERROR:
            return
        command: dict[str, Any] = {"command": "connect"}
        if self._port:
            command["port"] = self._port
        await call(self._http, "POST", "/api/connection", json=command)
        deadline = time.monotonic() + self._timeouts.printer_link_s
        while time.monotonic() < deadline:
            text = await self._state_text()
            lowered = text.lower()
            if not lowered.startswith(_LINKING) and not lowered.startswith(_UNLINKED):
                return
            if printer_state(text) is PrinterState.ERROR:
                return
            await asyncio.sleep(0.2)
        log.warning("%s: printer link still %r after %.0f s", self.base_url, text, self._timeouts.printer_link_s)

    async def _host_cameras(self) -> list[str]:
        try:
            settings = await self._get_json("/api/settings")
        except PrinterRejected:  # a key without settings access still prints; it just shows no cameras
            return []
        urls: list[str] = []
        for webcam in (settings.get("webcam") or {}).get("webcams") or []:
            compat = webcam.get("compat") or {}
            for key in ("stream", "snapshot"):
                if compat.get(key):
                    urls.append(urljoin(self.base_url + "/", str(compat[key])))
        return urls

    # --- push channel ---

    async def _open_push(self) -> ClientConnection:
        ws_url = "ws" + self.base_url.removeprefix("http") + "/sockjs/websocket"
        ws = await ws_connect(
            ws_url,
            open_timeout=self._timeouts.request_s,
            ping_interval=self._timeouts.ping_interval_s,
            ping_timeout=self._timeouts.ping_timeout_s,
            close_timeout=self._timeouts.ping_timeout_s,  # a hung host never answers the close either
            max_size=16 * 2**20,  # the first `history` message carries the terminal log
        )
        try:
            await asyncio.wait_for(ws.recv(), self._timeouts.request_s)  # {"connected": {...}}
            await self._authenticate(ws)
        except BaseException:
            await ws.close()
            raise
        return ws

    async def _authenticate(self, ws: ClientConnection) -> None:
        login = (await call(self._http, "POST", "/api/login", json={"passive": True})).json()
        await ws.send(json.dumps({"auth": f"{login['name']}:{login['session']}"}))

    async def _on_push(self, ws: ClientConnection, raw: str | bytes) -> None:
        message = json.loads(raw)
        if not isinstance(message, dict):
            return
        if "reauthRequired" in message:  # the session expired or the user logged out
            await self._authenticate(ws)
            return
        for event in self._monitor.feed(message):
            self._hub.publish(event)

    def _on_host_down(self, reason: str) -> None:
        log.warning("%s: %s", self.base_url, reason)
        self._hub.publish(self._monitor.host_down(reason))

    async def _on_host_up(self) -> None:
        await self._link_printer()  # a restarted OctoPrint comes back with its printer link closed
        self._hub.publish(self._monitor.host_up(await self.status()))


if TYPE_CHECKING:  # mypy checks here that the driver implements the interface
    _driver_type: type[PrinterDriver] = OctoPrintDriver
