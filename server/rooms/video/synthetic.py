"""Synthetic media for tests, benchmarks and demos: a moving test picture and a tone, paced in real time."""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

AUDIO_RATE = 48_000
AUDIO_SAMPLES = 960  # 20 ms


class _Paced(MediaStreamTrack):
    def __init__(self, period_s: float) -> None:
        super().__init__()
        self.period_s = period_s
        self.sent = 0
        self._start: float | None = None

    async def _tick(self) -> int:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            await asyncio.sleep(max(0.0, self._start + self.sent * self.period_s - time.monotonic()))
        index = self.sent
        self.sent += 1
        return index


class MovingPattern(_Paced):
    """`width`x`height` at `fps`: a solid `rgb` colour with a white bar that moves every frame."""

    kind = "video"

    def __init__(self, rgb: tuple[int, int, int], *, width: int = 640, height: int = 480, fps: float = 15.0) -> None:
        super().__init__(1.0 / fps)
        self.fps = fps
        self.image = np.empty((height, width, 3), dtype=np.uint8)
        self.image[:] = rgb
        self.rgb = rgb

    async def recv(self) -> av.VideoFrame:
        index = await self._tick()
        image = self.image.copy()
        x = (index * 8) % image.shape[1]
        image[:, x : x + 8] = 255
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = int(index * 90_000 / self.fps)
        frame.time_base = fractions.Fraction(1, 90_000)
        return frame


class Tone(_Paced):
    """A sine tone, 20 ms stereo s16 frames at 48 kHz."""

    kind = "audio"

    def __init__(self, frequency_hz: float = 440.0, amplitude: int = 6000) -> None:
        super().__init__(AUDIO_SAMPLES / AUDIO_RATE)
        self.frequency_hz, self.amplitude = frequency_hz, amplitude

    async def recv(self) -> av.AudioFrame:
        index = await self._tick()
        t = (index * AUDIO_SAMPLES + np.arange(AUDIO_SAMPLES)) / AUDIO_RATE
        mono = (np.sin(2 * np.pi * self.frequency_hz * t) * self.amplitude).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(mono, 2).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = index * AUDIO_SAMPLES
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        return frame


class CameraLike(_Paced):
    """A picture that costs an encoder what a real camera does: a textured scene that pans slowly, with
    sensor noise in every frame (a flat test card compresses to almost nothing and flatters a server)."""

    kind = "video"

    def __init__(self, *, width: int = 640, height: int = 480, fps: float = 15.0, seed: int = 7) -> None:
        super().__init__(1.0 / fps)
        self.fps = fps
        rng = np.random.default_rng(seed)
        y, x = np.mgrid[0:height, 0 : width * 2]
        scene = 110 + 50 * np.sin(x / 37.0) * np.cos(y / 23.0) + 30 * np.sin((x + y) / 11.0)
        texture = rng.normal(0, 18, (height, width * 2))
        gray = np.clip(scene + texture, 0, 255)
        self.scene = np.stack([gray, gray * 0.9 + 12, gray * 0.8 + 25], axis=2).astype(np.uint8)
        # Noise frames are drawn once and cycled: fresh noise each frame would cost this process more
        # than the server it is measuring.
        self.noise = [rng.integers(-6, 7, (height, width, 3), dtype=np.int16) for _ in range(8)]
        self.width = width

    async def recv(self) -> av.VideoFrame:
        index = await self._tick()
        x0 = (index * 3) % self.width
        view = self.scene[:, x0 : x0 + self.width].astype(np.int16) + self.noise[index % len(self.noise)]
        frame = av.VideoFrame.from_ndarray(np.clip(view, 0, 255).astype(np.uint8), format="rgb24")
        frame.pts = int(index * 90_000 / self.fps)
        frame.time_base = fractions.Fraction(1, 90_000)
        return frame
