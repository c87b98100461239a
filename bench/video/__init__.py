"""Video forwarding benchmark: how many 640x480@15 fps video streams one server forwards before more
than 1% of the frames are lost, and the CPU each forwarded stream costs, for

  trinity         the real server with video wired in (bench/video/trinity_server.py), SQLite
  aiortc_minimal  aiortc's MediaRelay and nothing else (bench/video/raw_relay.py): the floor

One publisher sends a moving test picture (VP8 from aiortc, as a browser would send) and N viewers
receive it through the server, N = 1, 2, 4, 6, ... until a step loses more than `--max-drop` % of the
frames (checked twice). Each step: the viewers join, `--warmup` s pass, then in a `--window` s window
the frames each viewer received are compared with the frames the publisher sent, and the server
process's CPU time is read from /proc. The viewers count frames without decoding them (their decoder
is replaced by a counter), so the load generator stays light; it runs in this process, the server in
its own, both on 127.0.0.1. A window during which processes outside the benchmark used more than a
quarter of a core is measured again (`--retries`); if it stays noisy the results file is left alone.

    python -m bench.video [--steps 1,2,4 --window 10 --servers trinity]
    python bench/run.py video

Writes the "video" key of bench/results.json (other keys are kept):
  forwarded_streams   largest N with at most --max-drop % lost
  cpu_per_stream_pct  server CPU per forwarded stream, % of one core (slope over the passing steps)
  decode_cpu_pct      server CPU with the publisher and no viewer (receiving and decoding it)
  cpu_at_max_pct      server CPU at forwarded_streams
  loop_cpu_per_stream_pct  the same for the server's event-loop thread alone (RTP, SRTP, the relay)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
RESULTS = REPO / "bench" / "results.json"
SERVERS = ("trinity", "aiortc_minimal")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.video", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--steps", default="1,2,4,6,8,10,12,14,16,18,20,24,28,32")
    parser.add_argument("--window", type=float, default=10.0, help="measured seconds per step")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--max-drop", type=float, default=1.0, help="percent of frames lost")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument(
        "--retries", type=int, default=3, help="re-measure a window this often while the machine is busy"
    )
    parser.add_argument("--no-write", action="store_true", help="print, do not touch bench/results.json")
    parser.add_argument("--force-write", action="store_true", help="write even if some window stayed noisy")
    args = parser.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s]
    args.steps = [int(s) for s in args.steps.split(",") if s]
    for name in args.servers:
        if name not in SERVERS:
            parser.error(f"unknown server {name!r}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from bench.video.load import measure_server

    args = parse_args(argv)
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        for name in args.servers:
            runs[name] = asyncio.run(measure_server(name, args, Path(tmp)))
    figures = summarize(runs, args)
    print_table(runs, figures)
    noisy = [name for name, run in runs.items() if run["noisy"]]
    if noisy and not args.force_write:
        print(f"not writing bench/results.json: the machine was busy during {noisy} (--force-write overrides)")
    elif not args.no_write:
        write_results(figures)
    return figures


def summarize(runs: dict[str, dict[str, Any]], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    figures: dict[str, dict[str, Any]] = {}
    peer = "aiortc_minimal"
    for figure in (
        "forwarded_streams",
        "cpu_per_stream_pct",
        "loop_cpu_per_stream_pct",
        "decode_cpu_pct",
        "cpu_at_max_pct",
    ):
        row: dict[str, Any] = {name: run[figure] for name, run in runs.items()}
        t, p = row.get("trinity"), row.get(peer)
        row["ratio"] = round(t / p, 3) if isinstance(t, int | float) and isinstance(p, int | float) and p else None
        figures[figure] = row
    figures["conditions"] = {
        "trinity": f"{args.width}x{args.height}@{args.fps:g} VP8, 1 publisher, max drop {args.max_drop:g}%, "
        f"{args.window:g} s windows, {os.cpu_count()} CPUs",
        peer: "same",
        "ratio": None,
    }
    return figures


def print_table(runs: dict[str, dict[str, Any]], figures: dict[str, dict[str, Any]]) -> None:
    for name, run in runs.items():
        print(f"\n{name}: viewers  lost%  server CPU%  loop CPU%  load CPU%  outside CPU%")
        for s in run["steps"]:
            print(
                f"  {s['n']:>14}  {s['drop_pct']:5.2f}  {s['server_cpu_pct']:11.1f}  {s['loop_cpu_pct']:9.1f}"
                f"  {s['load_cpu_pct']:9.1f}  {s['outside_cpu_pct']:12.1f}"
            )
    print()
    for figure, row in figures.items():
        print(f"{figure:>20}: " + "  ".join(f"{k}={v}" for k, v in row.items()))


def write_results(figures: dict[str, dict[str, Any]]) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["video"] = figures
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(REPO)} [video]")


def seed_room(data_dir: Path, secret: str, viewers: int) -> dict[str, Any]:
    from bench.fanout import seed_trinity

    rooms = seed_trinity(data_dir, secret, SimpleNamespace(clients=viewers + 1, rooms=1, workloads=["video"]))
    return rooms["video"][0]
