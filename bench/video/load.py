"""The load side of bench/video: one publisher and N counting viewers against one server process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import aiortc.rtcrtpreceiver
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from websockets.asyncio.client import connect

from bench.fanout import NOISY_CPU, ServerProcess, child_env, free_port, machine_cpu, process_cpu
from server.rooms.client import RoomClient
from server.rooms.video.client import VideoParticipant
from server.rooms.video.ice import pin_host_addresses
from server.rooms.video.synthetic import CameraLike

JOIN_TIMEOUT_S = 30.0


class _CountOnly:
    """A viewer's "decoder": hands on the encoded frame as it is, so viewers cost no decoding."""

    def decode(self, encoded_frame: Any) -> list[Any]:
        return [encoded_frame]


def count_without_decoding() -> None:
    aiortc.rtcrtpreceiver.get_decoder = lambda codec: _CountOnly()  # type: ignore[assignment]


class Viewer(Protocol):
    frames: int

    async def close(self) -> None: ...


class Setup(Protocol):
    publisher: CameraLike

    async def start(self) -> None: ...
    async def add_viewer(self, index: int) -> Viewer: ...
    async def close(self) -> None: ...


# ---- Trinity ---------------------------------------------------------------------------------------
class TrinityViewer:
    def __init__(self, room: RoomClient) -> None:
        self.room = room
        self.participant = VideoParticipant(room)

    @property
    def frames(self) -> int:
        return sum(t.frames for t in self.participant.received.values() if t.kind == "video")

    async def close(self) -> None:
        await self.participant.close()
        await self.room.close()


class TrinitySetup:
    def __init__(self, base_url: str, room: dict[str, Any], args: argparse.Namespace) -> None:
        self.base_url, self.room = base_url, room
        self.publisher = CameraLike(width=args.width, height=args.height, fps=args.fps)
        self._pub: TrinityViewer | None = None

    async def start(self) -> None:
        room = RoomClient(self.base_url, self.room["id"], self.room["tokens"][0])
        await room.connect()
        self._pub = TrinityViewer(room)
        self._pub.participant.local["video"] = self.publisher
        await self._pub.participant.join(audio=False, video=True)

    async def add_viewer(self, index: int) -> Viewer:
        room = RoomClient(self.base_url, self.room["id"], self.room["tokens"][index])
        await room.connect()
        viewer = TrinityViewer(room)
        await viewer.participant.join(audio=False, video=False)
        return viewer

    async def close(self) -> None:
        if self._pub is not None:
            await self._pub.close()


# ---- the bare aiortc relay -------------------------------------------------------------------------
class RawPeer:
    def __init__(self) -> None:
        self.pc = RTCPeerConnection()
        self.frames = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._ws: Any = None

    async def open(self, url: str, role: str) -> None:
        self._ws = await connect(url).__aenter__()
        await self._ws.send(json.dumps({"role": role, "sdp": self.pc.localDescription.sdp}))
        answer = json.loads(await self._ws.recv())
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    def on_track(self, track: MediaStreamTrack) -> None:
        async def count() -> None:
            with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
                while True:
                    await track.recv()
                    self.frames += 1

        self._tasks.append(asyncio.create_task(count()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._ws is not None:
            await self._ws.close()
        await self.pc.close()


class RawSetup:
    def __init__(self, url: str, args: argparse.Namespace) -> None:
        self.url = url
        self.publisher = CameraLike(width=args.width, height=args.height, fps=args.fps)
        self._pub = RawPeer()

    async def start(self) -> None:
        self._pub.pc.addTrack(self.publisher)
        await self._pub.pc.setLocalDescription(await self._pub.pc.createOffer())
        await self._pub.open(self.url, "publish")

    async def add_viewer(self, index: int) -> Viewer:
        viewer = RawPeer()
        viewer.pc.on("track", viewer.on_track)
        viewer.pc.addTransceiver("video", direction="recvonly")
        await viewer.pc.setLocalDescription(await viewer.pc.createOffer())
        await viewer.open(self.url, "view")
        return viewer

    async def close(self) -> None:
        await self._pub.close()


# ---- one server, ramped ----------------------------------------------------------------------------
def start_server(name: str, args: argparse.Namespace, workdir: Path) -> tuple[ServerProcess, Setup]:
    from bench.video import seed_room

    port = free_port()
    if name == "trinity":
        data_dir, secret = workdir / "trinity-data", secrets.token_hex(32)
        room = seed_room(data_dir, secret, max(args.steps))
        env = child_env(
            {"TRINITY_DATA_DIR": str(data_dir), "TRINITY_SECRET_KEY": secret, "TRINITY_LOG_LEVEL": "WARNING"}
        )
        cmd = [sys.executable, "-m", "bench.video.trinity_server", "--port", str(port)]
        server = ServerProcess(name, cmd, env, workdir, port)
        server.wait_ready(f"http://127.0.0.1:{port}/readyz")
        return server, TrinitySetup(f"http://127.0.0.1:{port}", room, args)
    cmd = [sys.executable, "-m", "bench.video.raw_relay", "--port", str(port)]
    server = ServerProcess(name, cmd, child_env(), workdir, port)
    server.wait_ready(None)
    return server, RawSetup(f"ws://127.0.0.1:{port}", args)


async def _window(
    server: ServerProcess, setup: Setup, viewers: list[Viewer], args: argparse.Namespace
) -> dict[str, Any]:
    """One measured window; repeated (up to --retries) while processes outside the benchmark used more
    than NOISY_CPU % of a core during it (the machine may be shared)."""
    for _ in range(args.retries + 1):
        step = await _measure(server, setup, viewers, args.window)
        if step["outside_cpu_pct"] <= NOISY_CPU:
            break
        print(f"[video] noisy window ({step['outside_cpu_pct']}% CPU outside the benchmark), again", flush=True)
        await asyncio.sleep(args.window / 2)  # let a burst from elsewhere pass
    step["noisy"] = step["outside_cpu_pct"] > NOISY_CPU
    return step


def loop_thread_cpu(pid: int) -> float:
    """CPU seconds of a process's main thread: the event loop, which does all of aiortc's RTP work
    (encoders run on other threads); when it is saturated frames are lost whatever the cores left."""
    try:
        fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(server: ServerProcess, setup: Setup, viewers: list[Viewer], seconds: float) -> dict[str, Any]:
    pid = server.proc.pid
    cpu0, load0, (busy0, _), t0 = process_cpu(pid), process_cpu(os.getpid()), machine_cpu(), time.monotonic()
    loop0 = loop_thread_cpu(pid)
    sent0, got0 = setup.publisher.sent, [v.frames for v in viewers]
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - t0
    sent = setup.publisher.sent - sent0
    got = sum(v.frames - g for v, g in zip(viewers, got0, strict=True))
    expected = sent * len(viewers)
    server_s, load_s = process_cpu(pid) - cpu0, process_cpu(os.getpid()) - load0
    outside_s = machine_cpu()[0] - busy0 - server_s - load_s
    return {
        "n": len(viewers),
        "drop_pct": round(max(0.0, 1 - got / expected) * 100, 2) if expected else 0.0,
        "server_cpu_pct": round(server_s / elapsed * 100, 1),
        "loop_cpu_pct": round((loop_thread_cpu(pid) - loop0) / elapsed * 100, 1),
        "load_cpu_pct": round(load_s / elapsed * 100, 1),
        "outside_cpu_pct": round(max(0.0, outside_s) / elapsed * 100, 1),
    }


async def _wait_flowing(viewers: list[Viewer]) -> bool:
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while time.monotonic() < deadline:
        if all(v.frames >= 3 for v in viewers):
            return True
        await asyncio.sleep(0.2)
    return False


def _slope(points: list[tuple[int, float]]) -> float:
    n = len(points)
    mx, my = sum(p[0] for p in points) / n, sum(p[1] for p in points) / n
    var = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / var if var else float("nan")


async def measure_server(name: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    pin_host_addresses(["127.0.0.1"])
    count_without_decoding()
    server, setup = start_server(name, args, workdir)
    viewers: list[Viewer] = []
    steps: list[dict[str, Any]] = []
    try:
        await setup.start()
        await asyncio.sleep(args.warmup)
        baseline = await _window(server, setup, [], args)
        print(f"[video] {name}: publisher only, server CPU {baseline['server_cpu_pct']}%", flush=True)
        for n in args.steps:
            while len(viewers) < n:
                viewers.append(await setup.add_viewer(len(viewers) + 1))
            flowing = await _wait_flowing(viewers)
            await asyncio.sleep(args.warmup)
            step = await _window(server, setup, viewers, args)
            if step["drop_pct"] > args.max_drop:  # one more look before calling it a limit
                step = await _window(server, setup, viewers, args)
            step["flowing"] = flowing
            steps.append(step)
            print(f"[video] {name}: {step}", flush=True)
            if step["drop_pct"] > args.max_drop or not flowing:
                break
    finally:
        for viewer in viewers:
            with contextlib.suppress(Exception):
                await viewer.close()
        with contextlib.suppress(Exception):
            await setup.close()
        server.stop()
    passing = [s for s in steps if s["drop_pct"] <= args.max_drop and s["flowing"]]
    best = passing[-1] if passing else None
    failing = next((s for s in steps if s not in passing), None)
    points = [(0, baseline["server_cpu_pct"])] + [(s["n"], s["server_cpu_pct"]) for s in passing]
    loop_points = [(0, baseline["loop_cpu_pct"])] + [(s["n"], s["loop_cpu_pct"]) for s in passing]
    return {
        "loop_cpu_per_stream_pct": round(_slope(loop_points), 2) if len(loop_points) > 1 else None,
        "steps": [{"n": 0, **{k: v for k, v in baseline.items() if k != "n"}}, *steps],
        "forwarded_streams": best["n"] if best else 0,
        "cpu_per_stream_pct": round(_slope(points), 2) if len(points) > 1 else None,
        "decode_cpu_pct": baseline["server_cpu_pct"],
        "cpu_at_max_pct": best["server_cpu_pct"] if best else None,
        # The figures stand if the windows that decide them were clean: the baseline, the last
        # passing step and the first failing one (a noisy window elsewhere passed anyway).
        "noisy": any(s["noisy"] for s in [baseline, best, failing] if s is not None),
    }
