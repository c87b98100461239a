"""The room WebSocket protocol: message types, error codes and payload validation (docs/protocol.md).

Pure Python: no I/O, no framework imports. Shared by the server, the Python client and the tests.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

PROTOCOL_VERSION = 1
SUBPROTOCOL = "trinity.v1"

# Close codes (4000-4999 are application codes in RFC 6455).
CLOSE_AUTH_FAILED = 4001
CLOSE_FORBIDDEN = 4003
CLOSE_NOT_FOUND = 4004
CLOSE_SLOW_CONSUMER = 4008
CLOSE_ROOM_FULL = 4009
CLOSE_PROTOCOL = 4010
CLOSE_SERVER_SHUTDOWN = 4011
CLOSE_AUTH_TIMEOUT = 4012


class ErrorCode(StrEnum):
    BAD_MESSAGE = "bad_message"
    UNKNOWN_TYPE = "unknown_type"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    INVALID_OP = "invalid_op"
    STALE_VERSION = "stale_version"
    CONFLICT = "conflict"
    NOTHING_TO_UNDO = "nothing_to_undo"
    NOT_PRESENTER = "not_presenter"
    PRESENTER_TAKEN = "presenter_taken"
    ROOM_FULL = "room_full"
    ROOM_ARCHIVED = "room_archived"
    PROTOCOL_VERSION = "protocol_version"
    SLOW_CONSUMER = "slow_consumer"
    INTERNAL = "internal"


class OpRejected(Exception):
    """A typed refusal of a client message; becomes an `error` frame on the wire."""

    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_frame(self, op_id: str | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "error", "code": str(self.code), "message": self.message}
        if op_id is not None:
            frame["op_id"] = op_id
        if self.details:
            frame["details"] = self.details
        return frame


# Client -> server frame types.
HELLO = "hello"
OP = "op"
POINTER = "pointer"
CAMERA = "camera"
PRESENCE = "presence"
PING = "ping"
# Video signaling (docs/protocol.md, "Video"): ephemeral, routed to server/rooms/video, never stored.
RTC_PREFIX = "rtc."
RTC_CLIENT_TYPES = frozenset(
    {"rtc.join", "rtc.answer", "rtc.ice", "rtc.state", "rtc.renegotiate", "rtc.leave"}
    | {"rtc.consent", "rtc.record", "rtc.sync"}
)

# Sequenced (persisted) operation kinds a client may send inside an `op` frame.
OP_KINDS = frozenset(
    {
        "annotation.create",
        "annotation.update",
        "annotation.delete",
        "undo",
        "redo",
        "chat.send",
        "presenter.take",
        "presenter.release",
        "presenter.handover",
        "scene.model.add",
        "scene.model.set",
    }
)
SYSTEM_OP_KINDS = frozenset({"room.archive", "presenter.release", "plan.propose", "plan.decide", "record.snapshot"})

ANNOTATION_KINDS = frozenset({"marker", "distance", "angle", "plane", "trajectory", "note"})
MAX_ID_CHARS = 64
MAX_LABEL_CHARS = 200


def require(condition: bool, message: str) -> None:
    if not condition:
        raise OpRejected(ErrorCode.INVALID_OP, message)


def identifier(value: Any, field: str) -> str:
    require(
        isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS,
        f"{field} must be a string of 1-{MAX_ID_CHARS} characters",
    )
    return value


def point(value: Any, field: str) -> list[float]:
    """A point or vector in patient LPS millimetres: three finite numbers."""
    ok = (
        isinstance(value, list | tuple)
        and len(value) == 3
        and all(isinstance(c, int | float) and not isinstance(c, bool) and math.isfinite(c) for c in value)
    )
    require(ok, f"{field} must be three finite numbers (LPS mm)")
    return [float(c) for c in value]


def _sub(a: list[float], b: list[float]) -> list[float]:
    return [a[0] - b[0], a[1] - b[1], a[2] - b[2]]


def _norm(v: list[float]) -> float:
    return math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])


def _optional_model(data: dict[str, Any], out: dict[str, Any]) -> None:
    if data.get("model_id") is not None:
        out["model_id"] = identifier(data["model_id"], "model_id")


def annotation_geometry(kind: str, data: Any, max_note_chars: int) -> dict[str, Any]:
    """Validate an annotation's geometry and add the server-computed measurement.

    Measurements (value_mm, value_deg, length_mm) are computed here, never trusted from a client,
    so every participant sees the same number.
    """
    require(kind in ANNOTATION_KINDS, f"annotation kind must be one of {sorted(ANNOTATION_KINDS)}")
    require(isinstance(data, dict), "annotation data must be an object")
    out: dict[str, Any] = {}
    if kind == "marker":
        out["point"] = point(data.get("point"), "point")
    elif kind == "distance":
        a, b = point(data.get("a"), "a"), point(data.get("b"), "b")
        out.update(a=a, b=b, value_mm=round(_norm(_sub(b, a)), 4))
    elif kind == "angle":
        a, v, b = point(data.get("a"), "a"), point(data.get("vertex"), "vertex"), point(data.get("b"), "b")
        va, vb = _sub(a, v), _sub(b, v)
        na, nb = _norm(va), _norm(vb)
        require(na > 0 and nb > 0, "angle arms must have non-zero length")
        cos = max(-1.0, min(1.0, sum(x * y for x, y in zip(va, vb, strict=True)) / (na * nb)))
        out.update(a=a, vertex=v, b=b, value_deg=round(math.degrees(math.acos(cos)), 4))
    elif kind == "plane":
        p, n = point(data.get("point"), "point"), point(data.get("normal"), "normal")
        length = _norm(n)
        require(length > 1e-9, "plane normal must be non-zero")
        out.update(point=p, normal=[c / length for c in n])
    elif kind == "trajectory":
        entry, target = point(data.get("entry"), "entry"), point(data.get("target"), "target")
        diameter = data.get("diameter_mm")
        require(
            isinstance(diameter, int | float) and not isinstance(diameter, bool) and 0 < diameter <= 50,
            "diameter_mm must be a number in (0, 50]",
        )
        length = _norm(_sub(target, entry))
        require(length > 0, "trajectory entry and target must differ")
        out.update(entry=entry, target=target, diameter_mm=float(diameter), length_mm=round(length, 4))
    elif kind == "note":
        text = data.get("text")
        require(
            isinstance(text, str) and 0 < len(text) <= max_note_chars,
            f"note text must be 1-{max_note_chars} characters",
        )
        out["text"] = text
        if data.get("point") is not None:
            out["point"] = point(data["point"], "point")
    _optional_model(data, out)
    return out


def pointer_payload(frame: dict[str, Any]) -> dict[str, Any]:
    """A pointer is a surface point or a 3D ray (origin + direction), both in LPS mm."""
    out: dict[str, Any] = {}
    if frame.get("point") is not None:
        out["point"] = point(frame["point"], "point")
    elif frame.get("ray") is not None:
        ray = frame["ray"]
        require(isinstance(ray, dict), "ray must be an object with origin and direction")
        out["ray"] = {
            "origin": point(ray.get("origin"), "ray.origin"),
            "direction": point(ray.get("direction"), "ray.direction"),
        }
    else:
        out["point"] = None  # pointer left the model
    if frame.get("model_id") is not None:
        out["model_id"] = identifier(frame["model_id"], "model_id")
    return out


def camera_payload(frame: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "position": point(frame.get("position"), "position"),
        "target": point(frame.get("target"), "target"),
        "up": point(frame.get("up", [0, 0, 1]), "up"),
    }
    fov = frame.get("fov_deg", 45)
    require(isinstance(fov, int | float) and 1 <= fov <= 170, "fov_deg must be in [1, 170]")
    out["fov_deg"] = float(fov)
    return out
