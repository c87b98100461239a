"""Printer cameras for maker rooms: a video source per printer, offered to everyone in the room.

Two kinds of source:
- `FrameProviderCamera`: a callable returning the next picture (numpy HxWx3 RGB array, PIL image or
  av.VideoFrame, or an awaitable of one), sampled at `fps`: the printer simulator's synthetic camera.
- `StreamCamera`: an MJPEG (HTTP multipart) or RTSP URL read by aiortc's MediaPlayer. An H.264
  stream is opened with decode=False and its encoded packets are forwarded to every viewer without
  decoding or re-encoding (the viewers' slots are negotiated for H.264); anything else, MJPEG included
  (WebRTC has no MJPEG codec), is decoded once and encoded per viewer like a participant's camera.
A source is opened when a room's media session needs it and closed with the session, so an unwatched
camera costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import av
import numpy as np
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

log = logging.getLogger("trinity.video")

Picture = Any  # numpy.ndarray (HxWx3 RGB uint8) | PIL.Image.Image | av.VideoFrame
FrameProvider = Callable[[], Picture | Awaitable[Picture]]
VIDEO_TIME_BASE = fractions.Fraction(1, 90_000)


class CameraSource(Protocol):
    camera_id: str
    name: str

    async def open(self) -> tuple[MediaStreamTrack, str]:
        """The camera's video track and how viewers get it: "any" (encoded per viewer) or "h264" (packets)."""
        ...

    async def close(self) -> None: ...


def to_video_frame(picture: Picture) -> av.VideoFrame:
    if isinstance(picture, av.VideoFrame):
        return picture
    if isinstance(picture, np.ndarray):
        array = picture if picture.dtype == np.uint8 else np.clip(picture, 0, 255).astype(np.uint8)
        if array.ndim == 2:
            array = np.repeat(array[:, :, None], 3, axis=2)
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(array[:, :, :3]), format="rgb24")
    if hasattr(picture, "convert"):  # PIL.Image
        return av.VideoFrame.from_image(picture.convert("RGB"))
    raise TypeError(f"a camera frame must be a numpy array, PIL image or av.VideoFrame, not {type(picture).__name__}")


class FrameProviderTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, provider: FrameProvider, fps: float) -> None:
        super().__init__()
        self.provider = provider
        self.period_s = 1.0 / fps
        self.frames = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            await asyncio.sleep(max(0.0, self._start + self.frames * self.period_s - time.monotonic()))
        if inspect.iscoroutinefunction(self.provider):
            picture = await self.provider()
        else:
            # A renderer may take milliseconds: keep it off the event loop.
            picture = await asyncio.to_thread(self.provider)
            if inspect.isawaitable(picture):
                picture = await picture
        frame = to_video_frame(picture)
        frame.pts = int(self.frames * self.period_s * 90_000)
        frame.time_base = VIDEO_TIME_BASE
        self.frames += 1
        return frame


class FrameProviderCamera:
    def __init__(self, camera_id: str, name: str, provider: FrameProvider, *, fps: float = 10.0) -> None:
        self.camera_id, self.name, self.provider, self.fps = camera_id, name, provider, fps
        self._track: FrameProviderTrack | None = None

    async def open(self) -> tuple[MediaStreamTrack, str]:
        self._track = FrameProviderTrack(self.provider, self.fps)
        return self._track, "any"

    async def close(self) -> None:
        if self._track is not None:
            self._track.stop()
            self._track = None


class StreamCamera:
    def __init__(
        self,
        camera_id: str,
        name: str,
        url: str,
        *,
        format: str | None = None,
        options: dict[str, str] | None = None,
        passthrough: bool = True,
        timeout_s: int = 10,
    ) -> None:
        self.camera_id, self.name, self.url = camera_id, name, url
        self.format = format or ("mpjpeg" if url.startswith(("http://", "https://")) else None)
        self.options = options or ({"rtsp_transport": "tcp"} if url.startswith("rtsp") else {})
        self.passthrough = passthrough
        self.timeout_s = timeout_s
        self._player: MediaPlayer | None = None

    def _player_for(self, decode: bool) -> MediaPlayer:
        return MediaPlayer(self.url, format=self.format, options=self.options, timeout=self.timeout_s, decode=decode)

    def _video_codec(self) -> str | None:
        """The stream's codec, "h264" only for Annex B H.264 (RTSP, MPEG-TS): the form aiortc packetizes.
        MP4-style H.264 (length-prefixed, avcC extradata starting with 1) is decoded instead."""
        with av.open(self.url, format=self.format, options=self.options, timeout=self.timeout_s) as container:
            if not container.streams.video:
                return None
            codec = container.streams.video[0].codec_context
            extradata = codec.extradata or b""
            return "h264-avcc" if codec.name == "h264" and extradata[:1] == b"\x01" else codec.name

    async def open(self) -> tuple[MediaStreamTrack, str]:
        # Opening reads from the network: off the event loop. Only H.264 passes through, since the
        # viewers' slots for pre-encoded cameras are negotiated for H.264 alone.
        passthrough = self.passthrough and await asyncio.to_thread(self._video_codec) == "h264"
        player = await asyncio.to_thread(self._player_for, not passthrough)
        if player.video is None:
            await self._stop(player)
            raise ValueError(f"camera {self.camera_id}: no usable video stream at {self.url}")
        self._player = player
        return player.video, "h264" if passthrough else "any"

    @staticmethod
    async def _stop(player: MediaPlayer) -> None:
        for track in (player.video, player.audio):
            if track is not None:
                with contextlib.suppress(Exception):
                    track.stop()

    async def close(self) -> None:
        if self._player is not None:
            await self._stop(self._player)
            self._player = None


def camera_from_config(entry: dict[str, Any], providers: dict[str, FrameProvider] | None = None) -> CameraSource:
    """{"id", "name", "url"} or {"id", "name", "provider": <key in providers>, "fps"?}."""
    if "url" in entry:
        return StreamCamera(entry["id"], entry.get("name", entry["id"]), entry["url"], format=entry.get("format"))
    provider = (providers or {}).get(entry.get("provider", ""))
    if provider is None:
        raise ValueError(f"camera {entry.get('id')}: no url and no known frame provider")
    return FrameProviderCamera(entry["id"], entry.get("name", entry["id"]), provider, fps=float(entry.get("fps", 10)))
