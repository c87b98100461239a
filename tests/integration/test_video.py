"""Video through the server (aiortc on 127.0.0.1): forwarding, mute, leave and rejoin, late joiners,
recording with consent, printer cameras. Signaling goes over the real room WebSocket."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection

from server.rooms.video.cameras import FrameProviderCamera, StreamCamera
from server.rooms.video.synthetic import MovingPattern, Tone
from tests.support.video import VideoServer, live_tasks, video_server
from tests.support.world import World, create_room

pytestmark = pytest.mark.webrtc

SMALL = {"width": 320, "height": 240, "fps": 15.0}  # the picture size does not matter here; CPU does


def media(rgb: tuple[int, int, int]) -> dict[str, object]:
    return {"audio": Tone(440), "video": MovingPattern(rgb, **SMALL)}


@pytest.fixture
async def video(world_sqlite: World, tmp_path: Path):  # type: ignore[no-untyped-def]
    async with video_server(world_sqlite, tmp_path) as server:
        yield server


def _is(user: str, kind: str):  # type: ignore[no-untyped-def]
    return lambda t: t.meta.get("user") == user and t.kind == kind


async def test_two_participants_receive_each_others_video_and_audio(video: VideoServer) -> None:
    world = video.world
    room_id = create_room(world, members={"engineer": "participant"})
    async with (
        video.participant(room_id, "surgeon", **media((200, 30, 30))) as a,
        video.participant(room_id, "engineer", **media((30, 30, 200))) as b,
    ):
        seq_before = a.room.seq
        await a.join()
        await b.join()
        a_video = await a.wait_track(_is(world["engineer"].id, "video"))
        a_audio = await a.wait_track(_is(world["engineer"].id, "audio"))
        b_video = await b.wait_track(_is(world["surgeon"].id, "video"))
        b_audio = await b.wait_track(_is(world["surgeon"].id, "audio"))
        for track in (a_video, a_audio, b_video, b_audio):
            await track.wait_frames(10)
        # The picture is the other participant's: B sees A's red, A sees B's blue.
        r, _, bl = b_video.last.to_ndarray(format="rgb24")[120, 40].tolist()
        assert r > 150 and bl < 90
        r, _, bl = a_video.last.to_ndarray(format="rgb24")[120, 40].tolist()
        assert bl > 150 and r < 90
        assert a_audio.last.sample_rate == 48_000
        session = await a.wait_session(lambda s: len(s["publishers"]) == 2)
        assert {p["user"] for p in session["publishers"]} == {world["surgeon"].id, world["engineer"].id}
        assert a.room.seq == seq_before  # signaling is ephemeral: nothing went into the room log
        assert not a.errors and not b.errors


async def test_mute_stops_frames_and_unmute_brings_them_back(video: VideoServer) -> None:
    world = video.world
    room_id = create_room(world, members={"engineer": "participant"})
    surgeon = world["surgeon"].id
    async with (
        video.participant(room_id, "surgeon", **media((200, 30, 30))) as a,
        video.participant(room_id, "engineer", **media((30, 30, 200))) as b,
    ):
        await a.join()
        await b.join()
        seen_video = await b.wait_track(_is(surgeon, "video"))
        seen_audio = await b.wait_track(_is(surgeon, "audio"))
        await seen_video.wait_frames(5)
        await seen_audio.wait_frames(5)

        await a.set_state(audio=False, video=False)
        await b.wait_session(
            lambda s: any(p["user"] == surgeon and not p["video"] and not p["audio"] for p in s["publishers"])
        )
        await asyncio.sleep(0.5)  # frames already on the wire when the mute arrived
        before = (seen_video.frames, seen_audio.frames)
        await asyncio.sleep(1.5)  # a quiet window: the server forwards nothing of a muted publisher
        assert (seen_video.frames, seen_audio.frames) == before
        # ...while the unmuted direction keeps flowing.
        await (await a.wait_track(_is(world["engineer"].id, "video"))).wait_frames(5)

        await a.set_state(audio=True, video=True)
        await seen_video.wait_frames(5)
        await seen_audio.wait_frames(5)


async def _settled(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until closing peer connections have wound down their tasks."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - nothing signals "a closed connection's tasks ended"
            await asyncio.sleep(0.1)


def _peer_connections() -> int:
    gc.collect()
    gc.unfreeze()  # the server's GC policy (core/gc_policy.py) freezes survivors, and get_objects skips those
    # type(), not isinstance(): the latter asks lazy proxies (celery's) for __class__, which evaluates them.
    return sum(1 for o in gc.get_objects() if issubclass(type(o), RTCPeerConnection) and o.connectionState != "closed")


async def test_leave_and_rejoin_three_times_leaks_no_tasks_peer_connections_or_transceivers(
    video: VideoServer,
) -> None:
    world = video.world
    room_id = create_room(world, members={"engineer": "participant"})
    engineer = world["engineer"].id
    async with video.participant(room_id, "surgeon", **media((200, 30, 30))) as a:
        await a.join()
        room = video.service.rooms[room_id]

        async def one_visit(by_socket: bool) -> None:
            async with video.participant(room_id, "engineer", **media((30, 30, 200))) as b:
                await b.join()
                await (await b.wait_track(_is(world["surgeon"].id, "video"))).wait_frames(3)
                await (await a.wait_track(_is(engineer, "video"))).wait_frames(3)
                if not by_socket:
                    await b.leave()  # rtc.leave on a live room socket; otherwise the socket just closes
            await a.wait_session(lambda s: [p["user"] for p in s["publishers"]] == [world["surgeon"].id])
            await _settled(lambda: len(room.peers) == 1)

        await one_visit(by_socket=False)  # the first visit starts what lives as long as A publishes
        tasks, pcs = len(live_tasks()), _peer_connections()
        a_peer = next(iter(room.peers.values()))
        transceivers = len(a_peer.pc.getTransceivers())
        for i in range(3):
            await one_visit(by_socket=i == 2)
            await _settled(lambda: len(live_tasks()) <= tasks and _peer_connections() <= pcs)
            assert len(a_peer.pc.getTransceivers()) == transceivers  # freed slots are reused
        assert video.service.stats()["peers"] == 1
        assert _peer_connections() == 2  # A's and the server's for A
        assert all(s.key is None for s in a_peer.forward if s.kind == "video")


async def test_a_late_third_participant_gets_both_tracks(video: VideoServer) -> None:
    world = video.world
    room_id = create_room(world, members={"engineer": "participant", "radiologist": "participant"})
    ids = {name: world[name].id for name in ("surgeon", "engineer", "radiologist")}
    async with (
        video.participant(room_id, "surgeon", **media((200, 30, 30))) as a,
        video.participant(room_id, "engineer", **media((30, 30, 200))) as b,
    ):
        await a.join()
        await b.join()
        await (await a.wait_track(_is(ids["engineer"], "video"))).wait_frames(5)
        async with video.participant(room_id, "radiologist", **media((30, 200, 30))) as c:
            await c.join()
            for other in ("surgeon", "engineer"):
                for kind in ("video", "audio"):
                    await (await c.wait_track(_is(ids[other], kind))).wait_frames(5)
            for early in (a, b):  # and the early ones get the newcomer
                await (await early.wait_track(_is(ids["radiologist"], "video"))).wait_frames(5)
            session = await c.wait_session(lambda s: len(s["publishers"]) == 3)
            assert [p["user"] for p in session["publishers"]] == [ids["surgeon"], ids["engineer"], ids["radiologist"]]


async def test_publishers_beyond_the_cap_receive_only(world_sqlite: World, tmp_path: Path) -> None:
    world = world_sqlite
    room_id = create_room(world, members={"engineer": "participant"})
    async with (
        video_server(world, tmp_path, max_publishers=1) as video,
        video.participant(room_id, "surgeon", **media((200, 30, 30))) as a,
        video.participant(room_id, "engineer", **media((30, 30, 200))) as b,
    ):
        await a.join()
        await b.join()
        await (await b.wait_track(_is(world["surgeon"].id, "video"))).wait_frames(5)
        assert [e["code"] for e in b.errors] == ["room_full"]
        assert b.errors[0]["details"] == {"max_publishers": 1}
        session = await a.wait_session(lambda s: len(s["viewers"]) == 1)
        assert [p["user"] for p in session["publishers"]] == [world["surgeon"].id]
        assert not [t for t in a.received.values() if t.meta]  # nothing to receive from B


async def test_a_recording_of_a_5s_call_is_a_playable_5s_file_made_with_everyones_consent(video: VideoServer) -> None:
    world = video.world
    room_id = create_room(world, members={"engineer": "participant"})
    owner, guest = world["surgeon"].id, world["engineer"].id
    async with (
        video.participant(room_id, "surgeon", **media((200, 30, 30))) as a,
        video.participant(room_id, "engineer", audio=Tone(660), video=MovingPattern((30, 30, 200), **SMALL)) as b,
    ):
        await a.join()
        await b.join()
        await (await b.wait_track(_is(owner, "video"))).wait_frames(5)

        await b.send({"type": "rtc.record", "action": "start"})
        await b.wait(lambda: any(e["code"] == "forbidden" for e in b.errors))  # only the owner starts
        await a.send({"type": "rtc.consent", "granted": True})
        await a.send({"type": "rtc.record", "action": "start"})
        await a.wait(lambda: any(e["code"] == "conflict" for e in a.errors))  # the engineer has not agreed
        assert a.errors[-1]["details"] == {"missing": [guest]}

        await b.send({"type": "rtc.consent", "granted": True})
        await a.wait_session(lambda s: s["recording"]["consents"] == sorted([owner, guest]))
        await a.send({"type": "rtc.record", "action": "start"})
        # Every client shows the recording indicator: both see it active.
        for who in (a, b):
            session = await who.wait_session(lambda s: s["recording"]["active"])
            assert session["recording"]["by"] == owner
        await asyncio.sleep(5.0)  # the call being recorded
        await a.send({"type": "rtc.record", "action": "stop"})
        await b.wait_session(lambda s: s["recording"]["last_artifact_id"] == "artifact-1")
        assert not (b.session or {})["recording"]["active"]

    [file] = video.captured.stored
    assert file.room_id == room_id and file.path.exists()
    with av.open(str(file.path)) as container:
        assert container.duration is not None
        assert 4.5 <= container.duration / 1_000_000 <= 6.5
        pictures = list(container.decode(video=0))
    assert len(pictures) >= 4.5 * 15
    r, _, b_ = pictures[len(pictures) // 2].to_ndarray(format="rgb24")[240, 100].tolist()
    assert r > 150 and b_ < 90  # the first publisher's (the owner's) camera: no presenter is set
    with av.open(str(file.path)) as container:
        sound = [f.to_ndarray() for f in container.decode(audio=0)]
    samples = np.concatenate([s.reshape(-1) for s in sound]).astype(np.float64)
    assert len(sound) > 0 and np.sqrt(np.mean(samples**2)) > 0.01  # both tones, mixed: not silence
    actions = video.captured.actions()
    assert actions.count("video.consent") == 2
    assert actions[-3:] == ["video.recording.started", "video.recording.stopped", "video.recording.stored"]
    started = dict(video.captured.audits)["video.recording.started"]
    assert started["user_id"] == owner and started["details"]["consents"] == sorted([owner, guest])


async def test_a_recording_stops_when_consent_is_withdrawn_or_a_newcomer_has_not_agreed(video: VideoServer) -> None:
    world = video.world
    room_id = create_room(world, members={"engineer": "participant", "radiologist": "participant"})
    async with (
        video.participant(room_id, "surgeon", **media((200, 30, 30))) as a,
        video.participant(room_id, "engineer", audio=None, video=None) as b,
    ):
        await a.join()
        for who in (a, b):
            await who.send({"type": "rtc.consent", "granted": True})
        await a.wait_session(lambda s: len(s["recording"]["consents"]) == 2)
        await a.send({"type": "rtc.record", "action": "start"})
        await a.wait_session(lambda s: s["recording"]["active"])
        await b.send({"type": "rtc.consent", "granted": False})
        session = await a.wait_session(lambda s: not s["recording"]["active"])
        assert session["recording"]["missing"] == [world["engineer"].id]

        await b.send({"type": "rtc.consent", "granted": True})
        await a.wait_session(lambda s: not s["recording"]["missing"])
        await a.send({"type": "rtc.record", "action": "start"})
        await a.wait_session(lambda s: s["recording"]["active"])
        async with video.participant(room_id, "radiologist") as c:  # in the room, has not consented
            session = await c.wait_session(lambda s: not s["recording"]["active"])
            assert session["recording"]["missing"] == [world["radiologist"].id]
        reasons = [f["details"]["reason"] for a_, f in video.captured.audits if a_ == "video.recording.stopped"]
        assert reasons == ["consent_withdrawn", "consent_missing"]
        await b.wait(lambda: len(video.captured.stored) == 2)


async def test_the_printer_simulators_camera_reaches_a_maker_room_client(video: VideoServer) -> None:
    world = video.world
    room_id = create_room(world, members={"technician": "participant"}, kind="maker")
    rendered: list[int] = []

    def simulator_camera() -> np.ndarray:
        """What the printer simulator's camera renders: a green build plate, a frame counter in red."""
        image = np.zeros((240, 320, 3), dtype=np.uint8)
        image[:, :, 1] = 180
        image[:8, : 8 * (len(rendered) % 40)] = (255, 0, 0)
        rendered.append(1)
        return image

    video.service.add_printer_camera(
        room_id, FrameProviderCamera("printer-1", "Prusa MK4 #1", simulator_camera, fps=10)
    )
    async with video.participant(room_id, "technician") as viewer:  # receives only
        await viewer.join()
        camera = await viewer.wait_track(lambda t: t.meta.get("source") == "printer")
        assert camera.meta["camera"] == "printer-1" and camera.meta["name"] == "Prusa MK4 #1"
        await camera.wait_frames(10)
        r, g, b = camera.last.to_ndarray(format="rgb24")[120, 160].tolist()
        assert g > 140 and r < 60 and b < 60
        session = await viewer.wait_session(lambda s: bool(s["cameras"]))
        assert session["cameras"] == [{"id": "printer-1", "name": "Prusa MK4 #1"}]
    assert len(rendered) >= 10


def _h264_clip(path: Path, container_format: str, seconds: int = 20) -> Path:
    """A printer camera's H.264: Annex B in MPEG-TS as RTSP delivers it, or length-prefixed in MP4."""
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.gop_size = 10
        stream.options = {"profile": "baseline", "tune": "zerolatency"}
        for i in range(seconds * 10):
            image = np.zeros((240, 320, 3), dtype=np.uint8)
            image[:, :, 2] = 200
            image[:, (i * 4) % 320 : (i * 4) % 320 + 4] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize(("container_format", "forwarded_as"), [("mpegts", "h264"), ("mp4", "any")])
async def test_a_camera_stream_is_forwarded_as_packets_when_it_is_annex_b_h264(
    video: VideoServer, tmp_path: Path, container_format: str, forwarded_as: str
) -> None:
    """Annex B H.264 passes through without decoding or encoding; anything else is decoded once and
    encoded per viewer."""
    world = video.world
    room_id = create_room(world, members={"technician": "participant"}, kind="maker")
    clip = _h264_clip(tmp_path / f"printer.{container_format}", container_format)
    video.service.add_printer_camera(room_id, StreamCamera("printer-2", "Printer 2", str(clip)))
    async with video.participant(room_id, "technician") as viewer:
        await viewer.join()
        camera = await viewer.wait_track(lambda t: t.meta.get("camera") == "printer-2")
        await camera.wait_frames(10)
        r, _, b = camera.last.to_ndarray(format="rgb24")[120, 10].tolist()
        assert b > 150 and r < 60
        [peer] = video.service.rooms[room_id].peers.values()
        [slot] = [s for s in peer.forward if s.key == ("camera", "printer-2")]
        assert slot.codec == forwarded_as
        if forwarded_as == "h264":  # the viewer's m-line carries the camera's own codec
            transceiver = next(t for t in viewer.pc.getTransceivers() if t.mid == camera.mid)
            assert transceiver._codecs[0].mimeType == "video/H264"


async def test_a_screen_share_reaches_the_others_as_a_screen_track(video: VideoServer) -> None:
    world = video.world
    room_id = create_room(world, members={"engineer": "participant"})
    surgeon = world["surgeon"].id
    async with (
        video.participant(room_id, "surgeon", **media((200, 30, 30))) as a,
        video.participant(room_id, "engineer", audio=None, video=None) as b,
    ):
        await a.join()
        await b.join()
        await (await b.wait_track(_is(surgeon, "video"))).wait_frames(3)
        a.local["screen"] = MovingPattern((240, 240, 240), **SMALL)
        await a.send({"type": "rtc.renegotiate", "publish": {"screen": True}})
        screen = await b.wait_track(lambda t: t.meta.get("user") == surgeon and t.meta.get("source") == "screen")
        await screen.wait_frames(5)
        r, g, b_ = screen.last.to_ndarray(format="rgb24")[120, 200].tolist()
        assert min(r, g, b_) > 200  # the white "screen", not the red camera
        session = await b.wait_session(lambda s: any(p["screen"] for p in s["publishers"]))
        assert session["publishers"][0]["video"] and session["publishers"][0]["screen"]


async def test_whoever_enters_the_room_sees_the_recording_indicator_unasked(video: VideoServer) -> None:
    world = video.world
    room_id = create_room(world, members={"engineer": "participant"})
    async with video.participant(room_id, "surgeon", **media((200, 30, 30))) as a:
        await a.join()
        async with video.participant(room_id, "engineer") as b:  # agrees, then leaves the room
            await b.send({"type": "rtc.consent", "granted": True})
            await a.wait_session(lambda s: world["engineer"].id in s["recording"]["consents"])
        await a.send({"type": "rtc.consent", "granted": True})
        await a.send({"type": "rtc.record", "action": "start"})
        await a.wait_session(lambda s: s["recording"]["active"])
        async with video.participant(room_id, "engineer") as b:  # comes back: sends nothing
            session = await b.wait_session(lambda s: s["recording"]["active"])
            assert session["recording"]["by"] == world["surgeon"].id and not session["recording"]["missing"]
        await a.send({"type": "rtc.record", "action": "stop"})
        await a.wait_session(lambda s: s["recording"]["last_artifact_id"] is not None)
