"""`python -m bench.video.raw_relay --port P`: the floor: aiortc's MediaRelay with nothing around it.

One WebSocket message each way per peer: the publisher sends its offer and gets the answer; each
viewer offers a recvonly video m-line and gets an answer carrying `relay.subscribe(publisher track)`.
No rooms, auth, gating, slots or restamping: what aiortc costs by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import aioice.ice
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack
from websockets.asyncio.server import ServerConnection, serve


class Relay:
    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.source: MediaStreamTrack | None = None
        self.has_source = asyncio.Event()
        self.peers: set[RTCPeerConnection] = set()

    async def handle(self, ws: ServerConnection) -> None:
        request: dict[str, Any] = json.loads(await ws.recv())
        pc = RTCPeerConnection()
        self.peers.add(pc)
        if request["role"] == "publish":

            @pc.on("track")
            def on_track(track: MediaStreamTrack) -> None:
                self.source = track
                self.has_source.set()

            await pc.setRemoteDescription(RTCSessionDescription(request["sdp"], "offer"))
        else:
            await self.has_source.wait()
            await pc.setRemoteDescription(RTCSessionDescription(request["sdp"], "offer"))
            assert self.source is not None
            pc.addTrack(self.relay.subscribe(self.source, buffered=False))
        await pc.setLocalDescription(await pc.createAnswer())
        await ws.send(json.dumps({"sdp": pc.localDescription.sdp}))
        try:
            await ws.wait_closed()
        finally:
            self.peers.discard(pc)
            await pc.close()


async def run(host: str, port: int) -> None:
    relay = Relay()
    async with serve(relay.handle, host, port):
        await asyncio.Future()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # Loopback only, as for Trinity in the benchmark.
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    asyncio.run(run(args.host, args.port))


if __name__ == "__main__":
    main()
