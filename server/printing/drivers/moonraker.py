"""A Klipper printer behind Moonraker (0.11): HTTP for files, jobs, queue and history; its JSON-RPC
websocket (`/websocket`) for live printer objects and notifications.

Moonraker runs without Klipper: files, the job queue, history and webcams answer, while anything that needs
Klippy (starting a print, printer objects) is refused with "Klippy Host not connected" → PrinterRejected.
The API key (Moonraker's `[authorization]`) is optional: hosts that trust the network need none.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from server.printing.drivers.base import BuildVolume, PrinterEvent, PrinterRejected, PrinterStatus, PrinterUnreachable
from server.printing.drivers.host_link import EventHub, EventSubscription, HostTimeouts, PushLoop, call
from server.printing.drivers.moonraker_events import (
    KLIPPY_NOT_CONNECTED,
    SUBSCRIBED_OBJECTS,
    MoonrakerMonitor,
    build_status,
)

if TYPE_CHECKING:
    from server.printing.drivers.base import PrinterDriver

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteFile:
    path: str  # relative to Moonraker's `gcodes` root
    size_bytes: int
    modified: float  # Unix time


@dataclass(frozen=True)
class QueuedJob:
    job_id: str
    filename: str
    time_added: float


@dataclass(frozen=True)
class JobQueue:
    state: str  # Moonraker's queue_state: ready, loading, starting, paused
    jobs: tuple[QueuedJob, ...]


@dataclass(frozen=True)
class HistoryJob:
    job_id: str
    filename: str
    status: str  # completed, cancelled, error, klippy_shutdown, in_progress, ...
    start_time: float
    end_time: float | None
    print_duration_s: float


def _queue(result: Mapping[str, Any]) -> JobQueue:
    jobs = tuple(
        QueuedJob(str(j["job_id"]), str(j["filename"]), float(j["time_added"])) for j in result.get("queued_jobs", [])
    )
    return JobQueue(str(result.get("queue_state", "")), jobs)


class MoonrakerDriver:
    """One Klipper printer on one Moonraker host."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeouts: HostTimeouts | None = None,
        webcam_urls: Sequence[str] = (),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"X-Api-Key": api_key} if api_key else {}
        self._api_key = api_key
        self._timeouts = timeouts or HostTimeouts()
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=self._timeouts.request_s)
        self._monitor = MoonrakerMonitor()
        self._hub = EventHub()
        self._push = PushLoop(self._open_push, self._on_push, self._on_host_down, self._on_host_up, self._timeouts)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._helpers: set[asyncio.Task[None]] = set()
        self._cameras = [urljoin(self.base_url + "/", url) for url in webcam_urls]
        self._closed = False

    # --- session ---

    async def connect(self) -> None:
        if self._closed:
            raise RuntimeError("this driver was closed; make a new one")
        if self._push.running:
            return
        await self.server_info()  # a wrong or missing key answers 401 here: PrinterRejected
        self._cameras = sorted({*self._cameras, *await self._host_cameras()})
        await self._push.start()
        await self._follow_klippy()

    async def close(self) -> None:
        self._closed = True
        for task in list(self._helpers):
            task.cancel()
        await self._push.close()
        self._fail_pending("driver closed")
        self._hub.close()
        await self._http.aclose()

    def events(self) -> EventSubscription:
        return self._hub.subscribe()

    def camera_urls(self) -> list[str]:
        return list(self._cameras)

    # --- state ---

    async def server_info(self) -> dict[str, Any]:
        return await self._get("/server/info")

    async def status(self) -> PrinterStatus:
        """Asked afresh over HTTP; leaves the live view (and so the events it tells) alone."""
        state, message = await self._klippy_state(await self.server_info())
        objects: dict[str, Any] = {}
        if state == "ready":
            objects = (await self._get(f"/printer/objects/query?{'&'.join(SUBSCRIBED_OBJECTS)}")).get("status") or {}
        return build_status(objects, state, message)

    async def build_volume(self) -> BuildVolume | None:
        """Klipper's axis limits (`toolhead.axis_minimum/maximum`); None while Klippy is not connected."""
        try:
            toolhead = (await self._get("/printer/objects/query?toolhead")).get("status", {}).get("toolhead", {})
        except PrinterRejected:
            return None
        low, high = toolhead.get("axis_minimum"), toolhead.get("axis_maximum")
        if not low or not high:
            return None
        return BuildVolume(*(float(high[i]) - float(low[i]) for i in range(3)))

    # --- files, jobs, queue, history ---

    async def upload(self, path: Path, remote_name: str) -> str:
        handle = await asyncio.to_thread(path.open, "rb")
        try:
            response = await call(
                self._http,
                "POST",
                "/server/files/upload",
                files={"file": (remote_name, handle, "application/octet-stream")},
                data={"root": "gcodes"},
                timeout=self._timeouts.upload_s,
            )
        finally:
            handle.close()
        return str(response.json()["item"]["path"])

    async def list_files(self) -> list[RemoteFile]:
        files: list[dict[str, Any]] = await self._get("/server/files/list?root=gcodes")
        return [RemoteFile(str(f["path"]), int(f["size"]), float(f["modified"])) for f in files]

    async def start(self, remote_name: str) -> None:
        await self._post("/printer/print/start", {"filename": remote_name})

    async def pause(self) -> None:
        await self._post("/printer/print/pause")

    async def resume(self) -> None:
        await self._post("/printer/print/resume")

    async def cancel(self) -> None:
        await self._post("/printer/print/cancel")

    async def enqueue(self, remote_names: Sequence[str]) -> JobQueue:
        """Add files to Moonraker's own job queue (it starts them one after another once Klipper is ready)."""
        return _queue(await self._post("/server/job_queue/job", {"filenames": list(remote_names)}))

    async def job_queue(self) -> JobQueue:
        return _queue(await self._get("/server/job_queue/status"))

    async def history(self, limit: int = 50) -> list[HistoryJob]:
        result = await self._get(f"/server/history/list?limit={limit}&order=desc")
        return [
            HistoryJob(
                job_id=str(job["job_id"]),
                filename=str(job.get("filename", "")),
                status=str(job.get("status", "")),
                start_time=float(job.get("start_time") or 0.0),
                end_time=None if job.get("end_time") is None else float(job["end_time"]),
                print_duration_s=float(job.get("print_duration") or 0.0),
            )
            for job in result.get("jobs", [])
        ]

    # --- HTTP helpers ---

    async def _get(self, path: str) -> Any:
        return (await call(self._http, "GET", path)).json()["result"]

    async def _post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return (await call(self._http, "POST", path, json=dict(body or {}))).json()["result"]

    async def _klippy_state(self, info: Mapping[str, Any]) -> tuple[str, str]:
        """Moonraker's view of Klippy: (state, its message)."""
        if not info.get("klippy_connected"):
            return "disconnected", KLIPPY_NOT_CONNECTED
        state = str(info.get("klippy_state") or "startup")
        if state == "ready":
            return state, ""
        try:
            return state, str((await self._get("/printer/info")).get("state_message") or f"Klippy {state}")
        except PrinterRejected as exc:
            return state, str(exc)

    async def _host_cameras(self) -> list[str]:
        try:
            webcams = (await self._get("/server/webcams/list")).get("webcams") or []
        except PrinterRejected:
            return []
        return [
            urljoin(self.base_url + "/", str(cam[key]))
            for cam in webcams
            for key in ("stream_url", "snapshot_url")
            if cam.get(key)
        ]

    # --- JSON-RPC websocket ---

    async def _open_push(self) -> ClientConnection:
        ws_url = "ws" + self.base_url.removeprefix("http") + "/websocket"
        ws = await ws_connect(
            ws_url,
            additional_headers=self._headers,
            open_timeout=self._timeouts.request_s,
            ping_interval=self._timeouts.ping_interval_s,
            ping_timeout=self._timeouts.ping_timeout_s,
            close_timeout=self._timeouts.ping_timeout_s,  # a hung host never answers the close either
            max_size=16 * 2**20,
        )
        try:
            identify = {"client_name": "Trinity", "version": "1", "type": "other", "url": "https://trinity.invalid"}
            if self._api_key:
                identify["api_key"] = self._api_key
            await self._rpc_before_loop(ws, "server.connection.identify", identify)
        except BaseException:
            await ws.close()
            raise
        return ws

    async def _rpc_before_loop(self, ws: ClientConnection, method: str, params: Mapping[str, Any]) -> Any:
        """A call on a session the push loop does not read yet: read here until the answer comes."""
        request_id = next(self._ids)
        await ws.send(_rpc_request(method, params, request_id))
        async with asyncio.timeout(self._timeouts.request_s):
            while True:
                message = json.loads(await ws.recv())
                if message.get("id") == request_id:
                    return _rpc_result(message)
                self._notification(message)

    async def rpc(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """One JSON-RPC call over the live websocket; its answer arrives through the push loop."""
        ws = self._push.ws
        if ws is None:
            raise PrinterUnreachable(f"{self.base_url}: websocket down")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await ws.send(_rpc_request(method, params or {}, request_id))
            async with asyncio.timeout(self._timeouts.request_s):
                return await future
        except (TimeoutError, ConnectionClosed) as exc:
            raise PrinterUnreachable(f"{self.base_url}: no answer to {method}: {exc!r}") from exc
        finally:
            self._pending.pop(request_id, None)

    async def _on_push(self, ws: ClientConnection, raw: str | bytes) -> None:
        message = json.loads(raw)
        if isinstance(message, dict):
            future = self._pending.get(message.get("id", -1))
            if future is not None and not future.done():
                try:
                    future.set_result(_rpc_result(message))
                except PrinterRejected as exc:
                    future.set_exception(exc)
            else:
                self._notification(message)

    def _notification(self, message: Mapping[str, Any]) -> None:
        method, params = message.get("method"), message.get("params") or []
        events: list[PrinterEvent] = []
        if method == "notify_status_update" and params:
            events = self._monitor.update(params[0])
        elif method == "notify_klippy_ready":
            self._spawn(self._follow_klippy())  # subscribing needs the loop that is calling us: not inline
        elif method == "notify_klippy_shutdown":
            self._spawn(self._follow_klippy())
        elif method == "notify_klippy_disconnected":
            events = self._monitor.klippy("disconnected", KLIPPY_NOT_CONNECTED)
        elif method == "notify_history_changed" and params:
            events = [_detail_event("history", params[0], self._monitor.status)]
        elif method == "notify_job_queue_changed" and params:
            events = [_detail_event("queue", params[0], self._monitor.status)]
        for event in events:
            self._hub.publish(event)

    async def _follow_klippy(self, *, tell: bool = True) -> None:
        """Read Klippy's state; once it is ready, subscribe to the printer objects."""
        state, message = await self._klippy_state(await self.server_info())
        events = self._monitor.klippy(state, message)
        if state == "ready":
            result = await self.rpc("printer.objects.subscribe", {"objects": SUBSCRIBED_OBJECTS})
            events += self._monitor.subscribed(result.get("status") or {})
        for event in events if tell else []:
            self._hub.publish(event)

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._helpers.add(task)
        task.add_done_callback(self._helper_done)

    def _helper_done(self, task: asyncio.Task[None]) -> None:
        self._helpers.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s: following Klippy failed: %s", self.base_url, task.exception())

    def _fail_pending(self, reason: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(PrinterUnreachable(f"{self.base_url}: {reason}"))

    def _on_host_down(self, reason: str) -> None:
        log.warning("%s: %s", self.base_url, reason)
        self._fail_pending(reason)
        self._hub.publish(self._monitor.host_down(reason))

    async def _on_host_up(self) -> None:
        await self._follow_klippy(tell=False)  # the news is the host's return, told with the state it has
        self._hub.publish(self._monitor.host_up(self._monitor.status))


def _rpc_request(method: str, params: Mapping[str, Any], request_id: int) -> str:
    return json.dumps({"jsonrpc": "2.0", "method": method, "params": dict(params), "id": request_id})


def _rpc_result(message: Mapping[str, Any]) -> Any:
    error = message.get("error")
    if error:
        raise PrinterRejected(f"{error.get('message', error)} (JSON-RPC {error.get('code', '?')})")
    return message.get("result")


def _detail_event(kind: str, detail: Any, status: PrinterStatus) -> PrinterEvent:
    return PrinterEvent(kind, status, dict(detail) if isinstance(detail, Mapping) else {"value": detail})


if TYPE_CHECKING:  # mypy checks here that the driver implements the interface
    _driver_type: type[PrinterDriver] = MoonrakerDriver
