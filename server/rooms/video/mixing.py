"""What a recording reads: the mix of every publisher's audio and the latest frame of one chosen video.

Each source has a reader task that keeps what arrives (audio: up to 0.5 s of samples; video: the newest
frame), so the recorder's clock, not the sources, sets the pace: a silent or frozen publisher gives
silence or the last picture, never a gap in the file.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

SAMPLE_RATE = 48_000
SAMPLES_PER_FRAME = 960  # 20 ms
MAX_BUFFERED_SAMPLES = SAMPLE_RATE // 2


class _AudioSource:
    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self.samples = np.zeros((0, 2), dtype=np.int16)
        self.resampler = av.AudioResampler(format="s16", layout="stereo", rate=SAMPLE_RATE)
        self.task = asyncio.create_task(self._read(), name="recording-audio")

    async def _read(self) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await self.track.recv()
                for out in self.resampler.resample(frame):  # type: ignore[arg-type]
                    chunk = out.to_ndarray().reshape(-1, 2)
                    self.samples = np.concatenate([self.samples, chunk])[-MAX_BUFFERED_SAMPLES:]

    def take(self, n: int) -> np.ndarray:
        out, self.samples = self.samples[:n], self.samples[n:]
        return out

    def close(self) -> None:
        self.task.cancel()
        self.track.stop()


class AudioMix:
    def __init__(self) -> None:
        self._sources: dict[Hashable, _AudioSource] = {}

    @property
    def keys(self) -> set[Hashable]:
        return set(self._sources)

    def add(self, key: Hashable, track: MediaStreamTrack) -> None:
        self.remove(key)
        self._sources[key] = _AudioSource(track)

    def remove(self, key: Hashable) -> None:
        source = self._sources.pop(key, None)
        if source is not None:
            source.close()

    def next_frame(self, index: int) -> av.AudioFrame:
        """Frame `index` of the mix (20 ms, s16 stereo 48 kHz): the sum of each source's next 20 ms."""
        total = np.zeros((SAMPLES_PER_FRAME, 2), dtype=np.int32)
        for source in self._sources.values():
            chunk = source.take(SAMPLES_PER_FRAME)
            total[: len(chunk)] += chunk
        mixed = np.clip(total, -32768, 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(mixed, format="s16", layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = index * SAMPLES_PER_FRAME
        return frame

    def close(self) -> None:
        for key in list(self._sources):
            self.remove(key)


class LatestVideo:
    """The newest frame of one video source, which can be switched (e.g. to the new presenter)."""

    def __init__(self) -> None:
        self.key: Hashable | None = None
        self.frame: av.VideoFrame | None = None
        self._track: MediaStreamTrack | None = None
        self._task: asyncio.Task[None] | None = None

    def switch(self, key: Hashable | None, track: MediaStreamTrack | None) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._track is not None:
            self._track.stop()
        self.key, self._track, self._task = key, track, None
        if track is not None:
            self._task = asyncio.create_task(self._read(track), name="recording-video")

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                if isinstance(frame, av.VideoFrame):
                    self.frame = frame

    def close(self) -> None:
        self.switch(None, None)
