"""The two track adapters between aiortc and the room's media graph.

    publisher's RemoteStreamTrack -> PublishedTrack (drained, gated) -> MediaRelay -> SlotTrack -> RTCRtpSender

`PublishedTrack` drains what a publisher sends even while nobody watches (aiortc's receive queue is
unbounded: an undrained 640x480 track grows by ~7 MB/s) and drops frames while the publisher is muted,
so mute is enforced by the server, not only by the client. `SlotTrack` is what a viewer's sender reads
for its whole life: its source can be swapped or cleared, so one transceiver is reused by the next
publisher instead of adding an m-line per join (aiortc ends a sender for good when its track ends).

Timestamps: a sender's encoder needs them to keep increasing across a swap (libvpx refuses a frame
whose pts goes back, and the sender then stops for good). Video frames are restamped once, when they
enter the room, on one media clock shared by every source; audio frames are small and are copied per
slot with a contiguous sample count.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections import deque
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame
from av.frame import Frame
from av.packet import Packet

Media = Frame | Packet

# Audio is 20 ms frames: 0.5 s of backlog is kept for a slow reader, older frames are dropped. Video
# keeps only the newest frame: a late frame is worth less than the next one.
AUDIO_BACKLOG = 25
VIDEO_BACKLOG = 1
PACKET_BACKLOG = 120  # pre-encoded video: every packet matters, a slow reader just lags
VIDEO_TIME_BASE = fractions.Fraction(1, 90_000)
_CLOCK_ORIGIN_S = time.monotonic()


def media_clock_pts() -> int:
    """Now on the media clock every video source shares (90 kHz)."""
    return int((time.monotonic() - _CLOCK_ORIGIN_S) * 90_000)


class PublishedTrack(MediaStreamTrack):
    """One publisher's audio or video, read once by a pump task, gated by mute."""

    def __init__(self, source: MediaStreamTrack, *, backlog: int | None = None) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self.enabled = True
        self.frames_in = 0
        self.frames_out = 0
        maxlen = backlog or (AUDIO_BACKLOG if source.kind == "audio" else VIDEO_BACKLOG)
        self._last_pts = -1
        self._buffer: deque[Media] = deque(maxlen=maxlen)
        self._ready = asyncio.Event()
        self._ended = False
        self._pump = asyncio.create_task(self._run(), name=f"published-{self.kind}")

    async def _run(self) -> None:
        try:
            while True:
                frame = await self.source.recv()
                self.frames_in += 1
                if isinstance(frame, VideoFrame):
                    frame.pts = self._last_pts = max(media_clock_pts(), self._last_pts + 1)
                    frame.time_base = VIDEO_TIME_BASE
                if self.enabled:
                    self._buffer.append(frame)
                    self._ready.set()
        except (MediaStreamError, asyncio.CancelledError):
            pass
        finally:
            self._ended = True
            self._ready.set()

    async def recv(self) -> Media:
        while not self._buffer:
            if self._ended or self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        self.frames_out += 1
        return self._buffer.popleft()

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = enabled
        if not enabled:
            self._buffer.clear()  # nothing captured before the mute goes out after it

    def stop(self) -> None:
        super().stop()
        self._pump.cancel()
        self.source.stop()
        self._ready.set()


class SlotTrack(MediaStreamTrack):
    """A viewer sender's track: forwards from a swappable source, idles without one, never ends by itself."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.source: MediaStreamTrack | None = None
        self._changed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._samples = 0  # audio sent so far: the next frame's pts

    def set_source(self, source: MediaStreamTrack | None) -> None:
        old, self.source = self.source, source
        if old is not None and old is not source:
            old.stop()
        if not self._changed.done():
            self._changed.set_result(None)

    async def recv(self) -> Media:
        while self.readyState == "live":
            source = self.source
            if self._changed.done():
                self._changed = asyncio.get_running_loop().create_future()
            if source is None:
                await self._changed
                continue
            pending: asyncio.Future[Media] = asyncio.ensure_future(source.recv())
            waiting: set[asyncio.Future[Any]] = {pending, self._changed}
            try:
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                pending.cancel()  # the sender is stopping: leave no read behind
                raise
            if pending.done():
                try:
                    return self._restamp(pending.result())
                except MediaStreamError:
                    if self.source is source:  # the publisher went away: idle until a new source
                        self.source = None
                        source.stop()
                    continue
            pending.cancel()  # swapped while waiting: read from the new source
            with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
                await pending
        raise MediaStreamError

    def _restamp(self, frame: Media) -> Media:
        if not isinstance(frame, AudioFrame):
            return frame  # video is on the shared media clock already; packets keep their own
        out = AudioFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name, layout=frame.layout.name)
        out.sample_rate = frame.sample_rate
        out.time_base = fractions.Fraction(1, frame.sample_rate)
        out.pts, self._samples = self._samples, self._samples + frame.samples
        return out

    def stop(self) -> None:
        super().stop()
        self.set_source(None)
