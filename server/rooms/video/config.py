"""The video settings, read from the app's Settings (fields `video_*`, env TRINITY_VIDEO_*).

Until those fields exist in server/settings.py each one falls back to the default here, so the
component runs with the defaults; the lead adds the fields listed in docs/deploy.md ("Video").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

# Measured by bench/video on the reference machine (2 vCPU, the load generator on the same machine):
# 640x480@15 fps video streams forwarded with at most 1% of frames lost: 20 (24 lost 1.4%), at 6.1% of
# a core each. A room of P publishers who all watch each other forwards P*(P-1) streams, so the
# publisher cap is the largest P within that budget: 5.
MEASURED_FORWARDED_STREAMS = 20


def publishers_within(streams: int) -> int:
    p = 1
    while (p + 1) * p <= streams:
        p += 1
    return p


@dataclass(frozen=True)
class VideoSettings:
    enabled: bool = True
    # RTCIceServer dicts handed to browsers and used by the server's peer connections:
    # [{"urls": ["stun:stun.example.org:3478"]}, {"urls": [...], "username": ..., "credential": ...}]
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    # coturn `use-auth-secret`: each participant gets TURN credentials valid for turn_ttl_s.
    turn_urls: list[str] = field(default_factory=list)
    turn_secret: str = ""
    turn_ttl_s: int = 3600
    # The local interface addresses the server gathers host candidates on (empty: every interface but
    # loopback, aioice's default). "127.0.0.1" for tests and one-machine demos; behind NAT add a STUN
    # server (ice_servers) for the public address, or relay through TURN (docs/deploy.md, "Video").
    host_addresses: list[str] = field(default_factory=list)
    max_publishers: int = publishers_within(MEASURED_FORWARDED_STREAMS)
    max_forwarded_streams: int = MEASURED_FORWARDED_STREAMS  # video streams forwarded by this instance
    recording_dir: Path = Path("var/recordings")
    recording_width: int = 640
    recording_height: int = 480
    recording_fps: int = 15
    answer_timeout_s: float = 20.0  # an offer not answered in time closes that peer connection
    camera_fps: float = 10.0  # frame-provider printer cameras

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> VideoSettings:
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f"video_{f.name}"
            if hasattr(settings, name):
                values[f.name] = getattr(settings, name)
        if "recording_dir" not in values and hasattr(settings, "data_dir"):
            values["recording_dir"] = Path(settings.data_dir) / "recordings"
        values.update(overrides)
        for name in ("ice_servers", "turn_urls", "host_addresses"):
            values[name] = _list(values.get(name, []), name)
        if values.get("recording_dir") in ("", None):
            values.pop("recording_dir", None)
        elif "recording_dir" in values:
            values["recording_dir"] = Path(values["recording_dir"])
        return cls(**values)


def _list(value: Any, name: str) -> list[Any]:
    """JSON text, a comma-separated string (address and URL lists) or a list already."""
    if isinstance(value, list):
        return value
    text = str(value or "").strip()
    if not text:
        return []
    if text.startswith("["):
        parsed = json.loads(text)
        if not isinstance(parsed, list):
            raise ValueError(f"video {name} must be a JSON list")
        return parsed
    return [part.strip() for part in text.split(",") if part.strip()]
