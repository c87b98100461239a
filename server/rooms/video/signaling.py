"""Video signaling frames on the room WebSocket (docs/protocol.md, "Video (v1 additive)").

Pure: no aiortc, no I/O. The server is the only side that makes offers (no glare, no rollback, which
aiortc lacks): a participant asks with `rtc.join` or `rtc.renegotiate` and answers each `rtc.offer`.
Every rtc frame is ephemeral: routed between one connection and the server, never stored in the room log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.rooms.protocol import RTC_CLIENT_TYPES, ErrorCode, OpRejected

# Participant -> server.
JOIN = "rtc.join"  # {publish: {audio, video, screen}}: open my peer connection, send me an offer
ANSWER = "rtc.answer"  # {sdp, negotiation}
ICE = "rtc.ice"  # {candidate, sdpMid?, sdpMLineIndex?}: a trickled candidate; candidate "" ends them
STATE = "rtc.state"  # {audio?, video?, screen?}: mute/unmute, camera on/off, screen share on/off
RENEGOTIATE = "rtc.renegotiate"  # {publish?}: send me a new offer (e.g. a screen share slot)
LEAVE = "rtc.leave"  # {}: close my peer connection
CONSENT = "rtc.consent"  # {granted}: my consent to the room being recorded
RECORD = "rtc.record"  # {action: start|stop}: room owner only
SYNC = "rtc.sync"  # {}: send me the current rtc.session

# Server -> participant.
OFFER = "rtc.offer"  # {sdp, negotiation, publish, tracks, ice_servers}
SESSION = "rtc.session"  # {publishers, cameras, recording, limits}: to everyone in the room
CLOSED = "rtc.closed"  # {reason}: the server closed this connection's peer connection

CLIENT_TYPES = RTC_CLIENT_TYPES  # registered in protocol.py, which the WebSocket edge routes by
SOURCES = ("audio", "video", "screen")  # a participant's publish slots
MAX_SDP_CHARS = 48_000
MAX_CANDIDATE_CHARS = 1024


@dataclass(frozen=True)
class Publish:
    audio: bool = True
    video: bool = True
    screen: bool = False

    def wants(self, source: str) -> bool:
        return bool(getattr(self, source))


@dataclass(frozen=True)
class Message:
    """A validated participant frame: `type` plus the fields that type uses."""

    type: str
    publish: Publish | None = None
    sdp: str = ""
    negotiation: int = 0
    candidate: str = ""
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None
    state: dict[str, bool] | None = None
    granted: bool = False
    action: str = ""


def _bad(message: str) -> OpRejected:
    return OpRejected(ErrorCode.BAD_MESSAGE, message)


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(f"{field} must be true or false")
    return value


def _publish(value: Any, default: Publish) -> Publish:
    if value is None:
        return default
    if not isinstance(value, dict):
        raise _bad("publish must be an object {audio, video, screen}")
    return Publish(**{s: _bool(value[s], f"publish.{s}") for s in SOURCES if s in value})


def parse(frame: dict[str, Any]) -> Message:
    """Validate a participant's rtc frame; OpRejected (an `error` frame, socket stays open) otherwise."""
    kind = frame.get("type")
    if kind not in CLIENT_TYPES:
        raise OpRejected(ErrorCode.UNKNOWN_TYPE, f"unknown frame type {kind!r}")
    if kind == JOIN:
        return Message(kind, publish=_publish(frame.get("publish"), Publish()))
    if kind == RENEGOTIATE:  # a new offer; slots only for what is asked
        return Message(kind, publish=_publish(frame.get("publish"), Publish(audio=False, video=False)))
    if kind == ANSWER:
        sdp, negotiation = frame.get("sdp"), frame.get("negotiation")
        if not isinstance(sdp, str) or not 0 < len(sdp) <= MAX_SDP_CHARS:
            raise _bad(f"sdp must be a string of 1-{MAX_SDP_CHARS} characters")
        if not isinstance(negotiation, int) or isinstance(negotiation, bool):
            raise _bad("negotiation must be the number of the offer answered")
        return Message(kind, sdp=sdp, negotiation=negotiation)
    if kind == ICE:
        candidate = frame.get("candidate") or ""
        mid, index = frame.get("sdpMid"), frame.get("sdpMLineIndex")
        if not isinstance(candidate, str) or len(candidate) > MAX_CANDIDATE_CHARS:
            raise _bad(f"candidate must be a string of at most {MAX_CANDIDATE_CHARS} characters")
        if mid is not None and not isinstance(mid, str):
            raise _bad("sdpMid must be a string")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
            raise _bad("sdpMLineIndex must be an integer")
        return Message(kind, candidate=candidate, sdp_mid=mid, sdp_mline_index=index)
    if kind == STATE:
        state = {s: _bool(frame[s], s) for s in SOURCES if s in frame}
        if not state:
            raise _bad("rtc.state needs at least one of audio, video, screen")
        return Message(kind, state=state)
    if kind == CONSENT:
        return Message(kind, granted=_bool(frame.get("granted"), "granted"))
    if kind == RECORD:
        action = frame.get("action")
        if action not in ("start", "stop"):
            raise _bad("action must be start or stop")
        return Message(kind, action=action)
    return Message(kind)  # LEAVE, SYNC
