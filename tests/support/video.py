"""A live server with video wired in, for the webrtc tests: media on 127.0.0.1 only.

aioice leaves 127.0.0.1 out of its host candidates; `host_addresses=["127.0.0.1"]` pins the candidates
of every peer connection in this process (the server's and the test participants') to loopback, so
no media ever leaves the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.rooms.client import RoomClient
from server.rooms.video.client import VideoParticipant
from server.rooms.video.config import VideoSettings
from server.rooms.video.recording import RecordingFile
from server.rooms.video.service import VideoService
from server.rooms.video.wiring import close_video, install_video
from tests.support.world import LiveServer, World

LOOPBACK = ["127.0.0.1"]


@dataclass
class Captured:
    """What the video service handed to its callbacks."""

    stored: list[RecordingFile] = field(default_factory=list)
    audits: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def store(self, file: RecordingFile) -> str:
        self.stored.append(file)
        return f"artifact-{len(self.stored)}"

    def audit(self, action: str, **fields: Any) -> None:
        self.audits.append((action, fields))

    def actions(self) -> list[str]:
        return [a for a, _ in self.audits]


@dataclass
class VideoServer:
    live: LiveServer
    service: VideoService
    captured: Captured
    world: World

    @contextlib.asynccontextmanager
    async def participant(self, room_id: str, who: str, **media: Any) -> AsyncIterator[VideoParticipant]:
        room = RoomClient(self.live.base_url, room_id, self.world[who].token)
        await room.connect()
        me = VideoParticipant(room, **media)
        try:
            yield me
        finally:
            await me.close()
            await room.close()


@contextlib.asynccontextmanager
async def video_server(world: World, tmp_path: Path, **overrides: Any) -> AsyncIterator[VideoServer]:
    """The real app under uvicorn; video wired with the lead's wiring function and test callbacks
    (replacing whatever server/app.py wired, so the callbacks are always these)."""
    captured = Captured()
    settings = VideoSettings.from_settings(
        world.settings, host_addresses=LOOPBACK, recording_dir=tmp_path / "recordings", **overrides
    )
    async with LiveServer(world.settings) as live:
        await close_video(live.app)
        service = await install_video(live.app, settings=settings, store=captured.store, audit=captured.audit)
        assert service is not None
        try:
            yield VideoServer(live, service, captured, world)
        finally:
            await close_video(live.app)


def live_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if not t.done()}
