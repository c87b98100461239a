"""`python -m tests.support.video_app`: `trinity serve` with video wired in, for the browser tests.

Until server/app.py wires video itself, this wraps create_app's lifespan and calls the wiring
function (server/rooms/video/wiring.py); once app.py does, it leaves app.py's wiring alone.
TRINITY_VIDEO_HOST_ADDRESSES (e.g. 127.0.0.1) is read here too, for the same reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn

from server.app import create_app
from server.core.logs import configure
from server.rooms.video.config import VideoSettings
from server.rooms.video.wiring import close_video, install_video
from server.settings import Settings
from tests.support.process import ROOT, ServerProcess


def build_app(settings: Settings) -> Any:
    app = create_app(settings)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:
            wired_here = getattr(a.state, "video", None) is None
            if wired_here:
                hosts = os.environ.get("TRINITY_VIDEO_HOST_ADDRESSES", "")
                await install_video(a, settings=VideoSettings.from_settings(settings, host_addresses=hosts))
            try:
                yield state
            finally:
                if wired_here:
                    await close_video(a)

    app.router.lifespan_context = lifespan
    return app


class VideoServerProcess(ServerProcess):
    def start(self, timeout_s: float = 30.0) -> VideoServerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.video_app"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not ready: {self.log_path.read_text()[-2000:]}")


def main() -> None:
    settings = Settings()
    configure(settings.log_level, settings.log_json)
    uvicorn.run(build_app(settings), host=settings.host, port=settings.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
