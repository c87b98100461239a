"""Record a room: the mixed audio of every publisher and one video (the presenter's, else the first
publisher's), into a fragmented MP4 (H.264 + AAC: plays everywhere; a crash loses at most the last
2 s, since each fragment is complete on disk).

Not aiortc's MediaRecorder: it encodes on the event loop thread, and x264 at 640x480 would stall every
room's WebSocket traffic for several milliseconds per frame. Here a clock task takes a frame every
1/fps s and 20 ms of mixed audio, and a single worker thread encodes and muxes them in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
from collections.abc import Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from aiortc.mediastreams import MediaStreamTrack

from server.rooms.video.mixing import SAMPLE_RATE, SAMPLES_PER_FRAME, AudioMix, LatestVideo

log = logging.getLogger("trinity.video")
MAX_PENDING_FRAMES = 30  # encoder behind by this many frames: skip video frames (audio is never skipped)


@dataclass(frozen=True)
class RecordingFile:
    path: Path
    room_id: str
    started_ms: int
    stopped_ms: int
    duration_s: float
    video_frames: int
    audio_frames: int
    media_type: str = "video/mp4"


class Recorder:
    def __init__(self, path: Path, room_id: str, *, width: int, height: int, fps: int) -> None:
        self.path = path
        self.room_id = room_id
        self.width, self.height, self.fps = width, height, fps
        self.audio = AudioMix()
        self.video = LatestVideo()
        self.started_ms = 0
        self.video_frames = 0
        self.audio_frames = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recorder")
        self._pending: list[Future[None]] = []
        self._clock: asyncio.Task[None] | None = None
        self._container: av.container.OutputContainer | None = None
        self._black = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), dtype=np.uint8), format="rgb24")

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(
            str(self.path), "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov+default_base_moof"}
        )
        video = container.add_stream("libx264", rate=self.fps)
        video.width, video.height, video.pix_fmt = self.width, self.height, "yuv420p"
        video.gop_size = self.fps * 2  # a fragment (and a seek point) every 2 s
        video.options = {"preset": "veryfast"}
        audio = container.add_stream("aac", rate=SAMPLE_RATE)
        audio.layout = "stereo"
        self._container, self._vstream, self._astream = container, video, audio

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._open)
        self.started_ms = int(time.time() * 1000)
        self._clock = asyncio.create_task(self._run(), name=f"recorder-{self.room_id}")

    # ---- sources --------------------------------------------------------------------------------
    def set_audio(self, tracks: dict[Hashable, MediaStreamTrack]) -> None:
        """Mix exactly these tracks (relay subscriptions; the recorder stops the ones it drops)."""
        for key in self.audio.keys - set(tracks):
            self.audio.remove(key)
        for key, track in tracks.items():
            if key in self.audio.keys:
                track.stop()  # already mixing that source
            else:
                self.audio.add(key, track)

    def set_video(self, key: Hashable | None, track: MediaStreamTrack | None) -> None:
        if key is not None and key == self.video.key:
            if track is not None:
                track.stop()
            return
        self.video.switch(key, track)

    # ---- the clock and the encoder thread -------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while True:
            next_video = t0 + self.video_frames / self.fps
            next_audio = t0 + self.audio_frames * SAMPLES_PER_FRAME / SAMPLE_RATE
            await asyncio.sleep(max(0.0, min(next_video, next_audio) - loop.time()))
            now = loop.time()
            self._pending = [f for f in self._pending if not f.done()]
            if next_audio <= now:
                frame = self.audio.next_frame(self.audio_frames)
                self.audio_frames += 1
                self._submit(self._encode_audio, frame)
            if next_video <= now:
                index = self.video_frames
                self.video_frames += 1
                if len(self._pending) < MAX_PENDING_FRAMES:
                    self._submit(self._encode_video, self.video.frame or self._black, index)

    def _submit(self, fn: object, *args: object) -> None:
        self._pending.append(self._executor.submit(fn, *args))  # type: ignore[arg-type]

    def _encode_video(self, frame: av.VideoFrame, index: int) -> None:
        out = frame.reformat(width=self.width, height=self.height, format="yuv420p")
        out.pts, out.time_base = index, fractions.Fraction(1, self.fps)
        self._mux(self._vstream.encode(out))

    def _encode_audio(self, frame: av.AudioFrame) -> None:
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._mux(self._astream.encode(frame))

    def _mux(self, packets: list[av.Packet]) -> None:
        if self._container is not None:
            self._container.mux(packets)

    def _close_container(self) -> None:
        if self._container is None:
            return
        for stream in (self._vstream, self._astream):
            with contextlib.suppress(Exception):
                self._mux(stream.encode(None))
        self._container.close()
        self._container = None

    async def stop(self) -> RecordingFile:
        """Stop the clock, flush the encoders and close the file (which is then complete)."""
        if self._clock is not None:
            self._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock
        self.audio.close()
        self.video.close()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_container)  # runs after every queued frame
        self._executor.shutdown(wait=False)
        stopped_ms = int(time.time() * 1000)
        return RecordingFile(
            path=self.path,
            room_id=self.room_id,
            started_ms=self.started_ms,
            stopped_ms=stopped_ms,
            duration_s=self.video_frames / self.fps,
            video_frames=self.video_frames,
            audio_frames=self.audio_frames,
        )
