"""Video signaling frames, recording consent and ICE settings: pure, no network."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from types import SimpleNamespace

import pytest

from server.rooms.protocol import RTC_CLIENT_TYPES, OpRejected
from server.rooms.video import signaling as s
from server.rooms.video.config import MEASURED_FORWARDED_STREAMS, VideoSettings, publishers_within
from server.rooms.video.consent import Consent
from server.rooms.video.ice import ice_servers_for


def test_every_participant_frame_type_is_registered_with_the_websocket_edge() -> None:
    assert s.CLIENT_TYPES == RTC_CLIENT_TYPES
    assert all(t.startswith("rtc.") for t in RTC_CLIENT_TYPES)


def test_frames_are_validated_into_messages() -> None:
    join = s.parse({"type": "rtc.join", "publish": {"audio": True, "video": False}})
    assert join.publish == s.Publish(audio=True, video=False, screen=False)
    assert s.parse({"type": "rtc.join"}).publish == s.Publish()
    assert s.parse({"type": "rtc.renegotiate"}).publish == s.Publish(audio=False, video=False, screen=False)
    answer = s.parse({"type": "rtc.answer", "sdp": "v=0\r\n", "negotiation": 3})
    assert (answer.sdp, answer.negotiation) == ("v=0\r\n", 3)
    ice = s.parse({"type": "rtc.ice", "candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0"})
    assert ice.sdp_mid == "0" and ice.candidate.startswith("candidate:")
    assert s.parse({"type": "rtc.ice", "candidate": None}).candidate == ""  # end of candidates
    assert s.parse({"type": "rtc.state", "audio": False}).state == {"audio": False}
    assert s.parse({"type": "rtc.consent", "granted": True}).granted is True
    assert s.parse({"type": "rtc.record", "action": "stop"}).action == "stop"
    assert s.parse({"type": "rtc.leave"}).type == s.LEAVE


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "rtc.nope"}, "unknown_type"),
        ({"type": "rtc.join", "publish": {"audio": "yes"}}, "bad_message"),
        ({"type": "rtc.join", "publish": []}, "bad_message"),
        ({"type": "rtc.answer", "sdp": "", "negotiation": 1}, "bad_message"),
        ({"type": "rtc.answer", "sdp": "x" * (s.MAX_SDP_CHARS + 1), "negotiation": 1}, "bad_message"),
        ({"type": "rtc.answer", "sdp": "v=0", "negotiation": True}, "bad_message"),
        ({"type": "rtc.ice", "candidate": "c", "sdpMLineIndex": "0"}, "bad_message"),
        ({"type": "rtc.state"}, "bad_message"),
        ({"type": "rtc.state", "video": 0}, "bad_message"),
        ({"type": "rtc.consent"}, "bad_message"),
        ({"type": "rtc.record", "action": "pause"}, "bad_message"),
    ],
)
def test_bad_frames_are_refused_with_a_typed_error(frame: dict[str, object], code: str) -> None:
    with pytest.raises(OpRejected) as refused:
        s.parse(frame)
    assert refused.value.code == code


def test_only_the_owner_starts_and_only_with_everyone_present_consenting() -> None:
    consent = Consent()
    present = {"owner", "guest"}
    with pytest.raises(OpRejected) as refused:
        consent.check_start(user_id="guest", role="participant", present=present)
    assert refused.value.code == "forbidden"
    consent.consents.add("owner")
    with pytest.raises(OpRejected) as refused:
        consent.check_start(user_id="owner", role="owner", present=present)
    assert refused.value.code == "conflict" and refused.value.details == {"missing": ["guest"]}
    consent.consents.add("guest")
    consent.check_start(user_id="owner", role="owner", present=present)
    consent.started("owner", 1000)
    assert consent.stop_reason(present) is None
    with pytest.raises(OpRejected):
        consent.check_start(user_id="owner", role="owner", present=present)  # already recording


def test_a_recording_must_stop_for_a_newcomer_a_withdrawal_or_an_empty_room() -> None:
    consent = Consent(consents={"owner", "guest"})
    consent.started("owner", 1000)
    assert consent.stop_reason({"owner", "guest", "late"}) == "consent_missing"
    consent.consents.discard("guest")
    assert consent.stop_reason({"owner", "guest"}) == "consent_missing"
    assert consent.stop_reason(set()) == "room_empty"
    consent.stopped()
    assert consent.stop_reason({"stranger"}) is None
    assert consent.frame({"owner", "guest"})["missing"] == ["guest"]


def test_turn_credentials_follow_coturns_shared_secret_scheme() -> None:
    settings = VideoSettings(
        ice_servers=[{"urls": ["stun:stun.example.org:3478"]}],
        turn_urls=["turn:turn.example.org:3478?transport=udp"],
        turn_secret="s3cret",
        turn_ttl_s=600,
    )
    stun, turn = ice_servers_for(settings, "user-1", now_s=1_000_000)
    assert stun == {"urls": ["stun:stun.example.org:3478"]}
    assert turn["username"] == "1000600:user-1"
    expected = hmac.new(b"s3cret", b"1000600:user-1", hashlib.sha1).digest()
    assert base64.b64decode(turn["credential"]) == expected
    assert ice_servers_for(VideoSettings(), "user-1") == []


def test_settings_come_from_the_apps_settings_with_defaults() -> None:
    app_settings = SimpleNamespace(
        data_dir=Path("/srv/trinity"),
        video_ice_servers='[{"urls": ["stun:stun.example.org:3478"]}]',
        video_host_addresses="127.0.0.1, 10.0.0.5",
        video_max_publishers=3,
    )
    settings = VideoSettings.from_settings(app_settings)
    assert settings.ice_servers == [{"urls": ["stun:stun.example.org:3478"]}]
    assert settings.host_addresses == ["127.0.0.1", "10.0.0.5"]
    assert settings.max_publishers == 3
    assert settings.recording_dir == Path("/srv/trinity/recordings")
    assert settings.max_forwarded_streams == MEASURED_FORWARDED_STREAMS
    assert VideoSettings.from_settings(SimpleNamespace()).max_publishers == publishers_within(
        MEASURED_FORWARDED_STREAMS
    )


@pytest.mark.parametrize(("streams", "publishers"), [(0, 1), (2, 2), (5, 2), (6, 3), (12, 4), (20, 5)])
def test_the_publisher_cap_fits_everyone_watching_everyone_in_the_stream_budget(streams: int, publishers: int) -> None:
    assert publishers_within(streams) == publishers
