"""One participant's RTCPeerConnection to the server: its publish slots, the tracks forwarded to it,
and the offer/answer cycle, in which the server always makes the offer.

Transceivers are never thrown away while the connection lives: a forward slot freed by a publisher
who left goes inactive and is reused by the next track of the same kind, so joining and leaving do
not grow the session description (aiortc keeps stopped transceivers' m-lines forever).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp

from server.rooms.connection import Connection
from server.rooms.video.ice import rtc_configuration
from server.rooms.video.signaling import OFFER, SOURCES, Publish
from server.rooms.video.tracks import PublishedTrack, SlotTrack

log = logging.getLogger("trinity.video")

SourceKey = tuple[Any, ...]  # (conn id, "audio"|"video"|"screen") or ("camera", camera id)


def kind_of(source: str) -> str:
    return "audio" if source == "audio" else "video"


@dataclass
class ForwardSlot:
    """A sendonly transceiver carrying another publisher's track to this participant."""

    transceiver: RTCRtpTransceiver
    track: SlotTrack
    codec: str  # "any" (we encode) or "h264" (pre-encoded camera packets pass through)
    key: SourceKey | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.track.kind


class Peer:
    def __init__(self, conn: Connection, ice_servers: list[dict[str, Any]]) -> None:
        self.conn = conn
        self.ice_servers = ice_servers
        self.pc = RTCPeerConnection(rtc_configuration(ice_servers))
        self.publish_slots: dict[str, RTCRtpTransceiver] = {}
        self.published: dict[str, PublishedTrack] = {}
        self.forward: list[ForwardSlot] = []
        self.flags = {"audio": True, "video": True, "screen": False}
        self.negotiation = 0
        self.awaiting_answer = False
        self.dirty = True  # the first offer is due
        self.closed = False

    @property
    def user_id(self) -> str:
        return self.conn.user_id

    # ---- slots ----------------------------------------------------------------------------------
    def open_publish_slots(self, publish: Publish) -> list[str]:
        """Add a recvonly slot for each wanted source not open yet; returns the sources added."""
        added = []
        for source in SOURCES:
            if publish.wants(source) and source not in self.publish_slots:
                self.publish_slots[source] = self.pc.addTransceiver(kind_of(source), direction="recvonly")
                added.append(source)
        if added:
            self.dirty = True
        return added

    def attach(self, key: SourceKey, track: MediaStreamTrack, meta: dict[str, Any], codec: str = "any") -> None:
        """Forward `track` (a relay subscription) on a free slot of its kind, or a new one."""
        slot = next((s for s in self.forward if s.key is None and s.kind == track.kind and s.codec == codec), None)
        if slot is None:
            slot_track = SlotTrack(track.kind)
            transceiver = self.pc.addTransceiver(slot_track, direction="sendonly")
            if codec == "h264":
                codecs = RTCRtpSender.getCapabilities("video").codecs
                h264 = [c for c in codecs if c.mimeType.lower() in ("video/h264", "video/rtx")]
                transceiver.setCodecPreferences(h264)
            slot = ForwardSlot(transceiver, slot_track, codec)
            self.forward.append(slot)
        slot.key, slot.meta = key, meta
        slot.track.set_source(track)
        slot.transceiver.direction = "sendonly"
        self.dirty = True

    def detach(self, key: SourceKey) -> bool:
        for slot in self.forward:
            if slot.key == key:
                slot.track.set_source(None)
                slot.key, slot.meta = None, {}
                slot.transceiver.direction = "inactive"
                self.dirty = True
                return True
        return False

    def forwarding(self, key: SourceKey) -> bool:
        return any(s.key == key for s in self.forward)

    @property
    def forwarded_video(self) -> int:
        return sum(1 for s in self.forward if s.key is not None and s.kind == "video")

    # ---- negotiation ----------------------------------------------------------------------------
    async def make_offer(self) -> dict[str, Any]:
        """The next `rtc.offer` frame; aiortc gathers every candidate here (no trickle from the server)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.negotiation += 1
        self.awaiting_answer, self.dirty = True, False
        return {
            "type": OFFER,
            "sdp": self.pc.localDescription.sdp,
            "negotiation": self.negotiation,
            "publish": {src: self.publish_slots[src].mid if src in self.publish_slots else None for src in SOURCES},
            "tracks": [{"mid": s.transceiver.mid, "kind": s.kind, **s.meta} for s in self.forward if s.key is not None],
            "ice_servers": self.ice_servers,
        }

    async def accept_answer(self, sdp: str) -> list[str]:
        """Apply the participant's answer; returns the sources whose track just arrived."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        self.awaiting_answer = False
        arrived = []
        for source, transceiver in self.publish_slots.items():
            track = transceiver.receiver.track
            if track is not None and source not in self.published:
                published = PublishedTrack(track)
                published.set_enabled(self.flags[source])
                self.published[source] = published
                arrived.append(source)
        return arrived

    async def add_candidate(self, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None) -> None:
        if not candidate:
            await self.pc.addIceCandidate(None)  # end of candidates
            return
        parsed = candidate_from_sdp(candidate.split(":", 1)[1] if candidate.startswith("candidate:") else candidate)
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index if sdp_mid is None else None
        if sdp_mid is None and sdp_mline_index is None:
            parsed.sdpMLineIndex = 0
        await self.pc.addIceCandidate(parsed)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for slot in self.forward:
            slot.track.set_source(None)
        for track in self.published.values():
            track.stop()
        # Shielded: cancelling a waiter of aiortc's close (its own close runs when the far end hangs
        # up) cancels the future that close then tries to resolve.
        with contextlib.suppress(Exception):
            await asyncio.shield(self.pc.close())
        self.published.clear()
        self.forward.clear()
        self.publish_slots.clear()
