"""A participant's media in Python, over a RoomClient's signaling (tests, benchmarks, tools).

    async with RoomClient(base, room_id, token) as room:
        me = VideoParticipant(room, audio=Tone(), video=MovingPattern((200, 30, 30)))
        await me.join()
        received = await me.wait_track(lambda t: t.meta["user"] == other_id and t.kind == "video")
        await received.wait_frames(10)

Every track the server forwards is drained by a counting task (aiortc's receive queue is unbounded), so
`ReceivedTrack.frames` says how many frames arrived and `last` holds the newest.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.rooms.client import RoomClient
from server.rooms.video.ice import rtc_configuration


@dataclass
class ReceivedTrack:
    mid: str
    kind: str
    track: MediaStreamTrack
    meta: dict[str, Any] = field(default_factory=dict)
    frames: int = 0
    last: Any = None
    last_at: float = 0.0
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_frames(self, count: int, timeout: float = 15.0) -> None:
        """Wait until `count` more frames have arrived."""
        target = self.frames + count
        async with asyncio.timeout(timeout):
            while self.frames < target:
                self._arrived.clear()
                await self._arrived.wait()


class VideoParticipant:
    def __init__(
        self,
        room: RoomClient,
        *,
        audio: MediaStreamTrack | None = None,
        video: MediaStreamTrack | None = None,
        count_frames: Callable[[ReceivedTrack, Any], None] | None = None,
    ) -> None:
        self.room = room
        self.local = {"audio": audio, "video": video}
        self.pc: RTCPeerConnection | None = None
        self.session: dict[str, Any] | None = None
        self.offers = 0
        self.received: dict[str, ReceivedTrack] = {}
        self.errors: list[dict[str, Any]] = []
        self.closed_reason: str | None = None
        self._on_frame = count_frames
        self._changed = asyncio.Event()
        self._counters: list[asyncio.Task[None]] = []
        self._reader = asyncio.create_task(self._read())

    # ---- actions --------------------------------------------------------------------------------
    async def join(self, *, audio: bool | None = None, video: bool | None = None) -> None:
        publish = {
            "audio": self.local["audio"] is not None if audio is None else audio,
            "video": self.local["video"] is not None if video is None else video,
        }
        await self.send({"type": "rtc.join", "publish": publish})
        await self.wait(lambda: self.offers > 0 and self.pc is not None and self.pc.connectionState == "connected")

    async def send(self, frame: dict[str, Any]) -> None:
        await self.room.send(frame)

    async def set_state(self, **flags: bool) -> None:
        await self.send({"type": "rtc.state", **flags})

    async def leave(self) -> None:
        await self.send({"type": "rtc.leave"})
        await self._close_pc()

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._close_pc()

    async def _close_pc(self) -> None:
        for task in self._counters:
            task.cancel()
        self._counters.clear()
        self.received.clear()
        if self.pc is not None:
            await asyncio.shield(self.pc.close())  # see Peer.close
            self.pc = None
        self.offers = 0

    # ---- waiting --------------------------------------------------------------------------------
    async def wait(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def wait_track(self, predicate: Callable[[ReceivedTrack], bool], timeout: float = 15.0) -> ReceivedTrack:
        found: list[ReceivedTrack] = []

        def match() -> bool:
            found[:] = [t for t in self.received.values() if t.meta and predicate(t)]
            return bool(found)

        await self.wait(match, timeout)
        return found[0]

    async def wait_session(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15.0) -> dict[str, Any]:
        await self.wait(lambda: self.session is not None and predicate(self.session), timeout)
        assert self.session is not None
        return self.session

    # ---- incoming frames ------------------------------------------------------------------------
    async def _read(self) -> None:
        async for frame in self.room.frames():
            kind = frame.get("type")
            if kind == "rtc.offer":
                await self._on_offer(frame)
            elif kind == "rtc.session":
                self.session = frame
            elif kind == "rtc.closed":
                self.closed_reason = frame.get("reason")
            elif kind == "error":
                self.errors.append(frame)
            self._changed.set()

    async def _on_offer(self, frame: dict[str, Any]) -> None:
        if self.pc is None:
            self.pc = RTCPeerConnection(rtc_configuration(frame.get("ice_servers") or []))
            self.pc.on("connectionstatechange", self._changed.set)
        pc = self.pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=frame["sdp"], type="offer"))
        by_mid = {t.mid: t for t in pc.getTransceivers() if t.mid is not None}
        for source, mid in (frame.get("publish") or {}).items():
            local = self.local.get(source)
            transceiver = by_mid.get(mid) if mid else None
            if transceiver is not None and local is not None and transceiver.sender.track is None:
                transceiver.sender.replaceTrack(local)
                transceiver.direction = "sendonly"
        metas = {t["mid"]: t for t in frame.get("tracks", [])}
        for mid, transceiver in by_mid.items():
            track = transceiver.receiver.track
            if track is None or mid in self.local_mids(frame):
                continue
            received = self.received.get(mid)
            if received is None:
                received = self.received[mid] = ReceivedTrack(mid, track.kind, track)
                self._counters.append(asyncio.create_task(self._count(received)))
            received.meta = metas.get(mid, {})
        await pc.setLocalDescription(await pc.createAnswer())
        await self.send({"type": "rtc.answer", "sdp": pc.localDescription.sdp, "negotiation": frame["negotiation"]})
        self.offers += 1

    @staticmethod
    def local_mids(frame: dict[str, Any]) -> set[str]:
        return {mid for mid in (frame.get("publish") or {}).values() if mid}

    async def _count(self, received: ReceivedTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await received.track.recv()
                received.frames += 1
                received.last, received.last_at = frame, time.monotonic()
                if self._on_frame is not None:
                    self._on_frame(received, frame)
                received._arrived.set()
