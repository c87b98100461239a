"""`python -m bench.video.trinity_server --port P`: Trinity (`trinity serve`) with video wired in, media
on 127.0.0.1, and no forwarding cap (the benchmark measures where the cap should be)."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from server.app import create_app
from server.core.logs import configure
from server.rooms.video.config import VideoSettings
from server.rooms.video.wiring import close_video, install_video
from server.settings import Settings

UNCAPPED = {"max_publishers": 1000, "max_forwarded_streams": 100_000, "host_addresses": ["127.0.0.1"]}


def build_app(settings: Settings) -> Any:
    app = create_app(settings)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:
            await close_video(a)  # whatever app.py wired: the benchmark's own settings instead
            await install_video(a, settings=VideoSettings.from_settings(settings, **UNCAPPED))
            try:
                yield state
            finally:
                await close_video(a)

    app.router.lifespan_context = lifespan
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = Settings()
    configure(settings.log_level, settings.log_json)
    uvicorn.run(build_app(settings), host=args.host, port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
