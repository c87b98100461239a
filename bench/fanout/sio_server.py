"""python-socketio relay: an ASGI app under uvicorn (the uvicorn settings of Trinity's `serve`),
one Socket.IO room per benchmark room, every `m` event re-emitted to the room minus the sender.

    python -m bench.fanout.sio_server --port 8766
"""

from __future__ import annotations

import argparse
from typing import Any

import socketio
import uvicorn

sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins=[])
app = socketio.ASGIApp(sio)
room_of: dict[str, str] = {}


@sio.event
async def connect(sid: str, _environ: dict[str, Any], auth: dict[str, Any] | None) -> bool:
    room = str((auth or {}).get("room") or "default")
    room_of[sid] = room
    await sio.enter_room(sid, room)
    return True


@sio.event
async def disconnect(sid: str, *_args: Any) -> None:
    room_of.pop(sid, None)


@sio.on("m")
async def relay(sid: str, data: Any) -> None:
    await sio.emit("m", data, room=room_of.get(sid), skip_sid=sid)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # Trinity's `serve` passes access_log=False and leaves loop and ws on "auto" (uvloop and
    # websockets-sansio here); the same here, so only the application layer differs.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        ws_max_size=16 * 1024 * 1024,
    )


if __name__ == "__main__":
    main()
