"""A room's recording: consent, start and stop by the owner, what is recorded, and handing the file on.

Mixed into RoomMedia and run on its task. Consent, start, stop and the stored file are audited through
the service's audit callback; the finished file goes to its `store` callback, which returns the id of
the artifact it became (shown to everyone in `rtc.session.recording.last_artifact_id`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from server.rooms.connection import Connection
from server.rooms.frames import dumps
from server.rooms.video import signaling as s
from server.rooms.video.consent import Consent
from server.rooms.video.recording import Recorder

if TYPE_CHECKING:
    from server.rooms.hub import RoomHub
    from server.rooms.video.config import VideoSettings
    from server.rooms.video.peer import Peer, SourceKey
    from server.rooms.video.service import VideoService

log = logging.getLogger("trinity.video")
PRESENCE_CHECK_S = 0.5


class RoomRecording:
    service: VideoService
    settings: VideoSettings
    hub: RoomHub
    room_id: str
    peers: dict[int, Peer]
    relay: MediaRelay

    def sources(self) -> list[tuple[SourceKey, MediaStreamTrack, dict[str, Any], str]]:
        raise NotImplementedError

    def submit(self, conn: Connection | None, message: Any) -> None:
        raise NotImplementedError

    def broadcast_session(self) -> None:
        raise NotImplementedError

    def session_frame(self) -> dict[str, Any]:
        raise NotImplementedError

    def init_recording(self) -> None:
        self.consent = Consent()
        self.recorder: Recorder | None = None
        self._finishing: set[asyncio.Task[None]] = set()
        self._present: set[str] = self.present()
        self._connections: set[int] = set(self.hub.connections)
        self._watch = asyncio.create_task(self._watch_presence(), name=f"video-presence-{self.room_id}")

    def present(self) -> set[str]:
        return set(self.hub.room_online_users)

    async def _watch_presence(self) -> None:
        """Who is in the room changes outside the media session (joins and leaves of the room itself):
        look every PRESENCE_CHECK_S, so a newcomer who has not consented stops a recording at once,
        and every new connection of the room gets the session (the recording indicator) unasked."""
        while True:
            await asyncio.sleep(PRESENCE_CHECK_S)
            connections = set(self.hub.connections)
            new = connections - self._connections
            self._connections = connections
            if new:
                self.submit(None, lambda room, ids=new: room._send_session_to(ids))
            present = self.present()
            if present != self._present or (self.recorder and self.recorder.video.key != self._video_choice()[0]):
                self._present = present
                self.submit(None, lambda room: room._presence_changed())

    async def _send_session_to(self, conn_ids: set[int]) -> None:
        text = dumps(self.session_frame())
        for conn_id in conn_ids:
            conn = self.hub.connections.get(conn_id)
            if conn is not None:
                conn.push(text)

    async def _presence_changed(self) -> None:
        reason = self.consent.stop_reason(self.present())
        if reason is not None:
            await self.stop_recording(None, reason)
        self.recording_sources_changed()

    async def handle_recording(self, conn: Connection, message: s.Message) -> None:
        if message.type == s.CONSENT:
            if message.granted:
                self.consent.consents.add(conn.user_id)
            else:
                self.consent.consents.discard(conn.user_id)
            await self.service.audit_event("video.consent", conn, self.room_id, granted=message.granted)
            if not message.granted and self.consent.active:
                await self.stop_recording(None, "consent_withdrawn")
        elif message.type == s.RECORD and message.action == "start":
            present = self.present()
            self.consent.check_start(user_id=conn.user_id, role=conn.role, present=present)
            await self.start_recording(conn, present)
        elif message.type == s.RECORD:
            self.consent.check_stop(role=conn.role)
            await self.stop_recording(conn, "stopped")

    async def start_recording(self, conn: Connection, present: set[str]) -> None:
        started_ms = int(time.time() * 1000)
        path = self.settings.recording_dir / f"{self.room_id}-{started_ms}.mp4"
        recorder = Recorder(
            path,
            self.room_id,
            width=self.settings.recording_width,
            height=self.settings.recording_height,
            fps=self.settings.recording_fps,
        )
        await recorder.start()
        self.recorder = recorder
        self.consent.started(conn.user_id, started_ms)
        self.recording_sources_changed()
        consents = sorted(self.consent.consents)
        await self.service.audit_event(
            "video.recording.started", conn, self.room_id, consents=consents, present=sorted(present)
        )

    async def stop_recording(self, conn: Connection | None, reason: str) -> None:
        recorder, self.recorder = self.recorder, None
        self.consent.stopped()
        await self.service.audit_event("video.recording.stopped", conn, self.room_id, reason=reason)
        if recorder is not None:
            task = asyncio.create_task(self._finish(recorder), name=f"recording-finish-{self.room_id}")
            self._finishing.add(task)
            task.add_done_callback(self._finishing.discard)

    async def _finish(self, recorder: Recorder) -> None:
        """Close the file and hand it on, off the room's task (storing a large file takes a while)."""
        try:
            file = await recorder.stop()
            artifact_id = await self.service.store_recording(file)
        except Exception:
            log.exception("video: recording could not be stored", extra={"room_id": self.room_id})
            await self.service.audit_event("video.recording.failed", None, self.room_id, path=str(recorder.path))
            return
        self.consent.last_artifact_id = artifact_id
        await self.service.audit_event(
            "video.recording.stored",
            None,
            self.room_id,
            artifact_id=artifact_id,
            duration_s=round(file.duration_s, 2),
            started_ms=file.started_ms,
            stopped_ms=file.stopped_ms,
        )
        self.broadcast_session()

    async def finish_recording_tasks(self) -> None:
        self._watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watch
        if self._finishing:
            await asyncio.gather(*self._finishing, return_exceptions=True)

    # ---- what is recorded -----------------------------------------------------------------------
    def _video_choice(self) -> tuple[Hashable | None, MediaStreamTrack | None]:
        """The presenter's screen share, else their camera, else the first screen share, camera, or
        printer camera in join order; only sources that are on."""
        presenter = self.hub.state.presenter
        video = [
            (key, track, meta)
            for key, track, meta, codec in self.sources()
            if track.kind == "video" and codec == "any" and getattr(track, "enabled", True)
        ]

        def rank(item: tuple[Hashable, MediaStreamTrack, dict[str, Any]]) -> tuple[int, int]:
            meta = item[2]
            return (0 if presenter and meta.get("user") == presenter else 1, 0 if meta["source"] == "screen" else 1)

        if not video:
            return None, None
        key, track, _ = min(video, key=rank)  # min is stable: join order breaks ties
        return key, track

    def recording_sources_changed(self) -> None:
        recorder = self.recorder
        if recorder is None:
            return
        key, track = self._video_choice()
        if key != recorder.video.key:
            recorder.set_video(key, self.relay.subscribe(track, buffered=False) if track is not None else None)
        audio = {key: track for key, track, _, _ in self.sources() if track.kind == "audio"}
        if set(audio) != recorder.audio.keys:
            recorder.set_audio({key: self.relay.subscribe(track) for key, track in audio.items()})
