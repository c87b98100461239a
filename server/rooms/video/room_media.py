"""One room's media on this instance: its participants' peer connections and what is forwarded to whom.

Every media change of a room (a join, an answer, a leave, a mute, a camera) goes through one task in
order, like the room hub's ops, so negotiation never interleaves. After each change every peer whose
forwarded set changed gets a new offer (one at a time per peer: a change while an offer is out waits
for its answer), and the room's `rtc.session` goes to everyone in the room if it changed.

Each publisher's track is read once (PublishedTrack) and fanned out by aiortc's MediaRelay: decoded
once per publisher, encoded once per viewer (aiortc's sender encodes whatever it is given). Viewers'
video subscriptions are unbuffered (a slow encoder skips to the newest frame), audio is buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from server.rooms.connection import Connection
from server.rooms.frames import dumps
from server.rooms.protocol import ErrorCode, OpRejected
from server.rooms.video import signaling as s
from server.rooms.video.cameras import CameraSource
from server.rooms.video.ice import ice_servers_for
from server.rooms.video.peer import Peer, SourceKey, kind_of
from server.rooms.video.room_recording import RoomRecording
from server.rooms.video.tracks import PACKET_BACKLOG, PublishedTrack

if TYPE_CHECKING:
    from server.rooms.hub import RoomHub
    from server.rooms.video.service import VideoService

log = logging.getLogger("trinity.video")
Command = tuple[Connection | None, Any]


class RoomMedia(RoomRecording):
    def __init__(self, service: VideoService, hub: RoomHub) -> None:
        self.service = service
        self.settings = service.settings
        self.hub = hub
        self.room_id = hub.room_id
        self.is_maker = hub.room_info.get("kind") == "maker"
        self.relay = MediaRelay()
        self.peers: dict[int, Peer] = {}  # by connection id, in join order
        self.cameras: dict[str, tuple[CameraSource, PublishedTrack, str]] = {}
        self.inbox: asyncio.Queue[Command] = asyncio.Queue()
        self._answer_timers: dict[int, asyncio.TimerHandle] = {}
        self._session_sent = ""
        self._closed = False
        self.init_recording()
        self._task = asyncio.create_task(self._run(), name=f"video-{self.room_id}")

    # ---- entry points ---------------------------------------------------------------------------
    def submit(self, conn: Connection | None, message: Any) -> None:
        self.inbox.put_nowait((conn, message))

    @property
    def idle(self) -> bool:
        return not self.peers and not self.hub.connections and not self.consent.active

    async def close(self) -> None:
        self._closed = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._shutdown()

    async def _shutdown(self) -> None:
        if self.consent.active:
            await self.stop_recording(None, "server_shutdown" if self._closed else "room_empty")
        await self.finish_recording_tasks()
        for timer in self._answer_timers.values():
            timer.cancel()
        for peer in list(self.peers.values()):
            await peer.close()
        self.peers.clear()
        for camera, track, _ in self.cameras.values():
            track.stop()
            await camera.close()
        self.cameras.clear()

    # ---- the actor ------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            conn, message = await self.inbox.get()
            try:
                await self._handle(conn, message)
            except OpRejected as rejection:
                if conn is not None:
                    conn.push(dumps(rejection.to_frame()))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("video: command failed", extra={"room_id": self.room_id})
                if conn is not None:
                    conn.push(dumps(OpRejected(ErrorCode.INTERNAL, "video signaling failed").to_frame()))
                    await self._remove_peer(conn.id, reason="error")
            try:
                await self._negotiate()
                self.broadcast_session()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("video: negotiation failed", extra={"room_id": self.room_id})

    async def _handle(self, conn: Connection | None, message: Any) -> None:
        if not isinstance(message, s.Message):
            await message(self)  # an internal command: a callable run in order with the rest
            return
        assert conn is not None
        kind = message.type
        if kind == s.JOIN:
            await self._join(conn, message.publish or s.Publish())
        elif kind == s.RENEGOTIATE:
            peer = self._peer(conn)
            self._open_slots(peer, message.publish or s.Publish(audio=False, video=False))
            peer.dirty = True
        elif kind == s.ANSWER:
            await self._answer(conn, message)
        elif kind == s.ICE:
            await self._peer(conn).add_candidate(message.candidate, message.sdp_mid, message.sdp_mline_index)
        elif kind == s.STATE:
            peer = self._peer(conn)
            for source, on in (message.state or {}).items():
                peer.flags[source] = on
                if source in peer.published:
                    peer.published[source].set_enabled(on)
        elif kind == s.LEAVE:
            await self._remove_peer(conn.id, reason="left")
        elif kind == s.SYNC:
            conn.push(dumps(self.session_frame()))
        else:
            await self.handle_recording(conn, message)

    def _peer(self, conn: Connection) -> Peer:
        peer = self.peers.get(conn.id)
        if peer is None:
            raise OpRejected(ErrorCode.INVALID_OP, "join the call first (rtc.join)")
        return peer

    # ---- joining, publishing, leaving -----------------------------------------------------------
    def sources(self) -> list[tuple[SourceKey, MediaStreamTrack, dict[str, Any], str]]:
        """Everything that can be forwarded now: (key, track to subscribe to, metadata, codec)."""
        out: list[tuple[SourceKey, MediaStreamTrack, dict[str, Any], str]] = []
        for peer in self.peers.values():
            for source, track in peer.published.items():
                meta = {"user": peer.user_id, "conn": peer.conn.id, "name": peer.conn.display_name, "source": source}
                out.append(((peer.conn.id, source), track, meta, "any"))
        for camera_id, (camera, camera_track, codec) in self.cameras.items():
            meta = {"user": None, "conn": None, "name": camera.name, "source": "printer", "camera": camera_id}
            out.append((("camera", camera_id), camera_track, meta, codec))
        return out

    def _subscribe(self, track: MediaStreamTrack, codec: str) -> MediaStreamTrack:
        # Pre-encoded packets must all arrive (a skipped packet corrupts the picture until the next key frame).
        return self.relay.subscribe(track, buffered=track.kind == "audio" or codec == "h264")

    async def _join(self, conn: Connection, publish: s.Publish) -> None:
        if conn.id in self.peers:  # a second join on the same connection: just a new offer
            peer = self.peers[conn.id]
            self._open_slots(peer, publish)
            peer.dirty = True
            return
        sources = self.sources()
        incoming = sum(1 for _, track, _, _ in sources if track.kind == "video")
        budget = self.settings.max_forwarded_streams - self.service.forwarded_video()
        if incoming > budget:
            raise OpRejected(
                ErrorCode.ROOM_FULL,
                f"this server forwards at most {self.settings.max_forwarded_streams} video streams; try again later",
            )
        peer = Peer(conn, ice_servers_for(self.settings, conn.user_id))
        self.peers[conn.id] = peer
        for key, track, meta, codec in sources:
            peer.attach(key, self._subscribe(track, codec), meta, codec)
        self._open_slots(peer, publish, budget=budget - incoming)

    def _open_slots(self, peer: Peer, publish: s.Publish, budget: int | None = None) -> None:
        wants = [src for src in s.SOURCES if publish.wants(src) and src not in peer.publish_slots]
        if not wants:
            return
        if peer.conn.role == "observer":
            raise OpRejected(ErrorCode.FORBIDDEN, "observers watch and listen; they do not publish")
        publishers = sum(1 for p in self.peers.values() if p.publish_slots and p is not peer)
        if not peer.publish_slots and publishers >= self.settings.max_publishers:
            peer.conn.push(
                dumps(
                    OpRejected(
                        ErrorCode.ROOM_FULL,
                        f"at most {self.settings.max_publishers} participants send video in a room; you receive only",
                        max_publishers=self.settings.max_publishers,
                    ).to_frame()
                )
            )
            return
        viewers = len(self.peers) - 1
        if budget is None:
            budget = self.settings.max_forwarded_streams - self.service.forwarded_video()
        new_video = sum(1 for src in wants if kind_of(src) == "video")
        if new_video and new_video * viewers > budget:
            raise OpRejected(ErrorCode.ROOM_FULL, "this server cannot forward more video now; join with audio only")
        peer.open_publish_slots(s.Publish(**{src: src in wants for src in s.SOURCES}))
        if "screen" in wants:
            peer.flags["screen"] = True

    async def _answer(self, conn: Connection, message: s.Message) -> None:
        peer = self._peer(conn)
        if not peer.awaiting_answer or message.negotiation != peer.negotiation:
            raise OpRejected(ErrorCode.CONFLICT, f"not the answer to offer {peer.negotiation}")
        timer = self._answer_timers.pop(conn.id, None)
        if timer:
            timer.cancel()
        for source in await peer.accept_answer(message.sdp):
            track = peer.published[source]
            meta = {"user": peer.user_id, "conn": conn.id, "name": conn.display_name, "source": source}
            for other in self.peers.values():
                if other is not peer:
                    other.attach((conn.id, source), self._subscribe(track, "any"), meta)
        self.recording_sources_changed()

    async def _remove_peer(self, conn_id: int, *, reason: str) -> None:
        peer = self.peers.pop(conn_id, None)
        timer = self._answer_timers.pop(conn_id, None)
        if timer:
            timer.cancel()
        if peer is None:
            return
        for source in list(peer.published):
            for other in self.peers.values():
                other.detach((conn_id, source))
        self.recording_sources_changed()
        await peer.close()
        if reason not in ("left", "disconnected"):
            peer.conn.push(dumps({"type": s.CLOSED, "reason": reason}))

    def disconnected(self, conn: Connection) -> None:
        self.submit(None, lambda room: room._remove_peer(conn.id, reason="disconnected"))

    # ---- printer cameras ------------------------------------------------------------------------
    async def add_camera(self, camera: CameraSource) -> None:
        if not self.is_maker:
            log.warning("video: printer cameras are offered in maker rooms only", extra={"room_id": self.room_id})
            return
        await self.remove_camera(camera.camera_id)
        opened, codec = await camera.open()
        track = PublishedTrack(opened, backlog=PACKET_BACKLOG if codec == "h264" else None)
        self.cameras[camera.camera_id] = (camera, track, codec)
        meta = {"user": None, "conn": None, "name": camera.name, "source": "printer", "camera": camera.camera_id}
        for peer in self.peers.values():
            peer.attach(("camera", camera.camera_id), self._subscribe(track, codec), meta, codec)
        self.recording_sources_changed()

    async def remove_camera(self, camera_id: str) -> None:
        entry = self.cameras.pop(camera_id, None)
        if entry is None:
            return
        for peer in self.peers.values():
            peer.detach(("camera", camera_id))
        camera, track, _ = entry
        track.stop()
        await camera.close()
        self.recording_sources_changed()

    # ---- offers and the session -----------------------------------------------------------------
    async def _negotiate(self) -> None:
        for peer in list(self.peers.values()):
            if peer.dirty and not peer.awaiting_answer and not peer.closed:
                try:
                    frame = await peer.make_offer()
                except Exception:
                    log.exception("video: no offer for a peer", extra={"room_id": self.room_id})
                    await self._remove_peer(peer.conn.id, reason="error")
                    continue
                peer.conn.push(dumps(frame))
                loop = asyncio.get_running_loop()
                self._answer_timers[peer.conn.id] = loop.call_later(
                    self.settings.answer_timeout_s, self._answer_overdue, peer.conn.id, peer.negotiation
                )

    def _answer_overdue(self, conn_id: int, negotiation: int) -> None:
        self._answer_timers.pop(conn_id, None)
        peer = self.peers.get(conn_id)
        if peer is not None and peer.awaiting_answer and peer.negotiation == negotiation:
            self.submit(None, lambda room: room._remove_peer(conn_id, reason="no_answer"))

    def session_frame(self) -> dict[str, Any]:
        publishers = [
            {
                "user": p.user_id,
                "conn": p.conn.id,
                "name": p.conn.display_name,
                **{src: src in p.published and p.flags[src] for src in s.SOURCES},
            }
            for p in self.peers.values()
            if p.publish_slots
        ]
        return {
            "type": s.SESSION,
            "room": self.room_id,
            "publishers": publishers,
            "viewers": [p.conn.id for p in self.peers.values() if not p.publish_slots],
            "cameras": [{"id": cid, "name": cam.name} for cid, (cam, _, _) in self.cameras.items()],
            "recording": self.consent.frame(self.present()),
            "limits": {"max_publishers": self.settings.max_publishers},
        }

    def broadcast_session(self) -> None:
        text = dumps(self.session_frame())
        if text == self._session_sent:
            return
        self._session_sent = text
        for conn in list(self.hub.connections.values()):
            conn.push(text)
