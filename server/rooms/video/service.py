"""This instance's video: the rooms with a media session, the entry points the WebSocket edge calls,
printer cameras, and the two injected callbacks (store a recording, audit an action).

Media lives on the instance that holds the participant's room WebSocket; with several instances a
room's participants must reach the same one (docs/deploy.md, "Video").
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from server.rooms.connection import Connection
from server.rooms.video import signaling
from server.rooms.video.cameras import CameraSource
from server.rooms.video.config import VideoSettings
from server.rooms.video.recording import RecordingFile
from server.rooms.video.room_media import RoomMedia

if TYPE_CHECKING:
    from server.rooms.hub import RoomHub

log = logging.getLogger("trinity.video")

StoreRecording = Callable[[RecordingFile], "str | Awaitable[str]"]
# audit(action, user_id=, site_id=, room_id=, details=)
AuditHook = Callable[..., "Awaitable[None] | None"]
IDLE_CHECK_S = 5.0


def keep_in_place(file: RecordingFile) -> str:
    """The default store: the file stays in the recording directory; its name is its id."""
    return f"file:{file.path.name}"


class VideoService:
    def __init__(
        self,
        settings: VideoSettings,
        *,
        store: StoreRecording | None = None,
        audit: AuditHook | None = None,
    ) -> None:
        self.settings = settings
        self._store = store or keep_in_place
        self._audit = audit
        self.rooms: dict[str, RoomMedia] = {}
        self._cameras: dict[str, dict[str, CameraSource]] = {}  # room -> camera id -> source
        self._reaper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_idle(), name="video-reaper")

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for room in list(self.rooms.values()):
            await room.close()
        self.rooms.clear()

    # ---- called by the WebSocket edge -----------------------------------------------------------
    def handle(self, hub: RoomHub, conn: Connection, frame: dict[str, Any]) -> None:
        """An `rtc.*` frame from `conn`: validated here (OpRejected on a bad one), applied in order by
        the room's media task."""
        message = signaling.parse(frame)
        room = self.rooms.get(hub.room_id)
        if room is None:
            if message.type == signaling.LEAVE:
                return
            room = self._open_room(hub)
        room.hub = hub  # the hubs unload an empty room; a later hub of the same room replaces it
        room.submit(conn, message)

    def disconnected(self, hub: RoomHub, conn: Connection) -> None:
        room = self.rooms.get(hub.room_id)
        if room is not None:
            room.disconnected(conn)

    def _open_room(self, hub: RoomHub) -> RoomMedia:
        room = RoomMedia(self, hub)
        self.rooms[hub.room_id] = room
        for camera in self._cameras.get(hub.room_id, {}).values():
            room.submit(None, lambda r, c=camera: r.add_camera(c))
        return room

    async def _reap_idle(self) -> None:
        """Close the media of rooms nobody is in any more (their cameras and relay with them)."""
        while True:
            await asyncio.sleep(IDLE_CHECK_S)
            for room_id, room in list(self.rooms.items()):
                if room.idle and room.inbox.empty():
                    del self.rooms[room_id]
                    await room.close()

    # ---- printer cameras ------------------------------------------------------------------------
    def add_printer_camera(self, room_id: str, camera: CameraSource) -> None:
        """Offer `camera` to everyone in the (maker) room `room_id`, now and whenever they join."""
        self._cameras.setdefault(room_id, {})[camera.camera_id] = camera
        room = self.rooms.get(room_id)
        if room is not None:
            room.submit(None, lambda r: r.add_camera(camera))

    def remove_printer_camera(self, room_id: str, camera_id: str) -> None:
        self._cameras.get(room_id, {}).pop(camera_id, None)
        room = self.rooms.get(room_id)
        if room is not None:
            room.submit(None, lambda r: r.remove_camera(camera_id))

    # ---- capacity, store, audit -----------------------------------------------------------------
    def forwarded_video(self) -> int:
        return sum(peer.forwarded_video for room in self.rooms.values() for peer in room.peers.values())

    def stats(self) -> dict[str, int]:
        return {
            "rooms": len(self.rooms),
            "peers": sum(len(r.peers) for r in self.rooms.values()),
            "forwarded_video": self.forwarded_video(),
            "recording": sum(1 for r in self.rooms.values() if r.recorder is not None),
        }

    async def store_recording(self, file: RecordingFile) -> str:
        result = self._store(file)
        return str(await result if inspect.isawaitable(result) else result)

    async def audit_event(self, action: str, conn: Connection | None, room_id: str, **details: Any) -> None:
        if self._audit is None:
            return
        try:
            result = self._audit(
                action,
                user_id=conn.user_id if conn else None,
                site_id=conn.site_id if conn else None,
                room_id=room_id,
                details=details,
            )
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("video: audit failed", extra={"room_id": room_id, "action": action})
