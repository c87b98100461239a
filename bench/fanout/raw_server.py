"""The floor: a bare `websockets` relay. Every text frame a client sends is written, unparsed, to
the other clients of the same room (the room is the URL path). No auth, no persistence, no queues.

    python -m bench.fanout.raw_server --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from websockets.asyncio.server import ServerConnection, broadcast, serve


async def serve_forever(host: str, port: int) -> None:
    rooms: dict[str, set[ServerConnection]] = {}

    async def handler(ws: ServerConnection) -> None:
        members = rooms.setdefault(ws.request.path if ws.request else "/", set())
        members.add(ws)
        try:
            async for message in ws:
                # broadcast() writes to each transport without awaiting: websockets' cheapest relay.
                broadcast([c for c in members if c is not ws], message)
        finally:
            members.discard(ws)

    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    # compression=None: uvicorn (Trinity, python-socketio) does not negotiate permessage-deflate
    # with these clients either, so all three servers send the same uncompressed frames.
    async with serve(handler, host, port, max_size=2**20, compression=None):
        print(f"raw websockets relay on {host}:{port}", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop  # same event loop as uvicorn picks for Trinity and python-socketio

        uvloop.run(serve_forever(args.host, args.port))
    except ImportError:
        asyncio.run(serve_forever(args.host, args.port))


if __name__ == "__main__":
    main()
