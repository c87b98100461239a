"""Fan-out benchmark: R rooms x C clients, each client sending at a fixed rate; end-to-end latency
(sender's send instant to every other client's receipt, one CLOCK_MONOTONIC) and delivered messages/s
for three servers under the same load, in the same run:

  trinity          the real server process (`python -m server.cli serve`), temp data dir, SQLite
  raw_websockets   a bare `websockets` relay (bench/fanout/raw_server.py): the floor
  python_socketio  python-socketio ASGI app under uvicorn, rooms, emit to the room minus the sender

and two workloads:

  annotations  persisted ops: Trinity gets `annotation.create` ops (unique ids, the label carries the
               send time) and the measured delivery is the `event` frame at the other clients; the
               peers relay the same op frame as an opaque JSON message.
  pointers     ephemeral `{"type":"pointer","point":[t, k, sender]}` frames, relayed to the others.

Every server runs as its own process; the load generator is `--procs` worker processes
(bench/fanout/loadgen.py), identical for all three servers, each owning whole rooms. After `--warmup`
seconds the window of `--duration` seconds is measured; messages sent in it must reach the C-1 other
clients of their room, and what did not arrive within `--drain` seconds after the window is `lost`.

    python -m bench.fanout [--rooms 10 --clients 10 --rate 20 --duration 10 ...]
    python bench/run.py fanout

Prints a table and replaces the "fanout" key of bench/results.json (other keys are kept).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
RESULTS = REPO / "bench" / "results.json"
SERVERS = ("trinity", "raw_websockets", "python_socketio")
WORKLOADS = ("annotations", "pointers")
FIGURES = ("p50_ms", "p99_ms", "delivered_per_s", "lost")
PASSWORD = "bench-password-0123"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.fanout", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=10, help="rooms (R)")
    parser.add_argument("--clients", type=int, default=10, help="clients per room (C)")
    parser.add_argument("--rate", type=float, default=20.0, help="messages/s each client sends")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds sent before the measured window")
    parser.add_argument("--duration", type=float, default=10.0, help="measured window, seconds")
    parser.add_argument("--drain", type=float, default=5.0, help="max seconds to wait for late deliveries after the window")
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes (rooms are split between them)")
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"comma-separated subset of {','.join(SERVERS)}")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated subset of {','.join(WORKLOADS)}")
    parser.add_argument("--trinity-env", action="append", default=[], metavar="KEY=VALUE", help="extra TRINITY_* variable for the Trinity server (repeatable)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON file to merge the figures into")
    parser.add_argument("--no-write", action="store_true", help="print only; leave the results file alone")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory (server logs, samples)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s]
    args.workloads = [w for w in args.workloads.split(",") if w]
    for name in args.servers:
        if name not in SERVERS:
            parser.error(f"unknown server {name!r}")
    for name in args.workloads:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}")
    if args.rooms < 1 or args.clients < 2 or args.rate <= 0 or args.duration <= 0 or args.procs < 1:
        parser.error("need rooms >= 1, clients >= 2, rate > 0, duration > 0, procs >= 1")
    args.procs = min(args.procs, args.rooms)
    return args


# ---- processes -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRINITY_")}  # nothing inherited by accident
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


def cpu_ticks(pid: int) -> float:
    """utime + stime of a process (all threads), in seconds, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str], workdir: Path, ready_url: str | None, port: int) -> None:
        self.name = name
        self.port = port
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready(ready_url)

    def _wait_ready(self, ready_url: str | None, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if ready_url:
                    with urllib.request.urlopen(ready_url, timeout=2) as response:
                        if response.status == 200:
                            return
                else:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in {timeout:.0f}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


class Worker:
    """A load-generator process; its stdout lines arrive on a queue so every wait has a timeout."""

    def __init__(self, config: dict[str, Any], log_path: Path) -> None:
        self._log = open(log_path, "wb")  # noqa: SIM115
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.fanout.loadgen"], cwd=REPO, env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, start_new_session=True
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.send(json.dumps(config))

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"load generator: no {prefix} within {timeout:.0f}s\n{self.tail()}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"load generator exited ({self.proc.wait()}) before {prefix}\n{self.tail()}")
            if line.startswith(prefix):
                return line[len(prefix) :].strip()

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._log.close()


# ---- Trinity set-up ------------------------------------------------------------------------------
def seed_trinity(data_dir: Path, secret: str, clients: int, rooms_per_workload: int, workloads: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Users bench0..bench{C-1} of one site (bench0 owns, the rest participate) in R rooms per workload,
    written straight into the SQLite database the server will open; one access token per user."""
    sys.path.insert(0, str(REPO))
    from server.accounts import service as accounts
    from server.core import auth
    from server.core.db import Database
    from server.core.migrate import upgrade
    from server.rooms import service as rooms
    from server.settings import Settings

    settings = Settings(data_dir=data_dir, database_url="", secret_key=secret, log_json=False)
    upgrade(settings.effective_database_url)
    db = Database(settings)
    try:
        with db.session() as session:
            accounts.create_site(session, site_id="bench-site", name="Bench Hospital")
            users = [
                accounts.create_user(session, site_id="bench-site", username=f"bench{i}", password=PASSWORD, role="surgeon" if i == 0 else "engineer", display_name=f"Bench {i}")
                for i in range(clients)
            ]
            owner = auth.Principal(users[0].id, users[0].site_id, users[0].role, users[0].display_name)
            tokens = [auth.login(session, settings, u.username, PASSWORD).access_token for u in users]
            out: dict[str, list[dict[str, Any]]] = {}
            for workload in workloads:
                out[workload] = []
                for r in range(rooms_per_workload):
                    room = rooms.create_room(session, owner, kind="consultation", title=f"bench {workload} {r}", case_id=None)
                    for user in users[1:]:
                        rooms.add_member(session, owner, room.id, user.id, "participant")
                    out[workload].append({"id": room.id, "clients": clients, "tokens": tokens})
    finally:
        db.close()
    return out


def start_server(name: str, args: argparse.Namespace, workdir: Path) -> tuple[ServerProcess, dict[str, list[dict[str, Any]]]]:
    port = free_port()
    if name == "trinity":
        data_dir = workdir / "trinity-data"
        secret = secrets.token_hex(32)
        rooms = seed_trinity(data_dir, secret, args.clients, args.rooms, args.workloads)
        env = {
            "TRINITY_DATA_DIR": str(data_dir),
            "TRINITY_SECRET_KEY": secret,
            "TRINITY_LOG_LEVEL": "WARNING",
            # The pointer throttle is set to twice the send rate. At exactly the send rate, any two pointer
            # frames of one client that arrive less than 1/rate apart (scheduler and network jitter, which
            # always exists) would have the second held back until the throttle interval has passed: a
            # delay made by the benchmark's own jitter meeting the throttle, not fan-out latency. At 2x the
            # throttle only engages when frames really come in faster than 2x the rate.
            "TRINITY_POINTER_MAX_HZ": f"{2 * args.rate:g}",
            # The per-connection rate limit must never drop benchmark frames (default 60/s, burst 120).
            "TRINITY_WS_RATE_PER_S": f"{max(60.0, 3 * args.rate):g}",
            "TRINITY_WS_RATE_BURST": str(max(120, math.ceil(6 * args.rate))),
            "TRINITY_ROOM_MAX_ONLINE": str(max(50, args.clients)),
        }
        for item in args.trinity_env:
            key, _, value = item.partition("=")
            env[key if key.startswith("TRINITY_") else f"TRINITY_{key.upper()}"] = value
        cmd = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
        server = ServerProcess(name, cmd, child_env(env), workdir, f"http://127.0.0.1:{port}/readyz", port)
        return server, rooms
    module = "bench.fanout.raw_server" if name == "raw_websockets" else "bench.fanout.sio_server"
    cmd = [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port)]
    server = ServerProcess(name, cmd, child_env(), workdir, None, port)
    rooms = {w: [{"id": f"{w}-{r}", "clients": args.clients, "tokens": []} for r in range(args.rooms)] for w in args.workloads}
    return server, rooms


# ---- one measurement -----------------------------------------------------------------------------
@dataclass
class Measurement:
    latencies: array = field(default_factory=lambda: array("d"))
    send_lag: array = field(default_factory=lambda: array("d"))
    sent: int = 0
    expected: int = 0
    received: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    foreign: int = 0
    reconnects: int = 0
    drained_s: float = 0.0
    loadgen_cpu: list[float] = field(default_factory=list)
    server_cpu: float = float("nan")
    duration: float = 0.0

    def percentile(self, p: float, values: array | None = None) -> float | None:
        data = sorted(self.latencies if values is None else values)
        if not data:
            return None
        return data[max(0, math.ceil(p / 100.0 * len(data)) - 1)]

    def figures(self) -> dict[str, float | int | None]:
        return {
            "p50_ms": _round(self.percentile(50)),
            "p99_ms": _round(self.percentile(99)),
            "delivered_per_s": _round(self.received / self.duration, 1),
            "lost": max(0, self.expected - self.received),
        }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


def measure(server: ServerProcess, server_name: str, workload: str, rooms: list[dict[str, Any]], args: argparse.Namespace, workdir: Path) -> Measurement:
    workers: list[Worker] = []
    result = Measurement(duration=args.duration)
    try:
        for w in range(args.procs):
            samples = workdir / f"{server_name}-{workload}-{w}.lat"
            config = {
                "repo": str(REPO),
                "server": server_name,
                "base_url": f"http://127.0.0.1:{server.port}",
                "workload": workload,
                "rooms": rooms[w :: args.procs],
                "rate": args.rate,
                "warmup_s": args.warmup,
                "duration_s": args.duration,
                "drain_s": args.drain,
                "connect_timeout_s": 90,
                "samples_path": str(samples),
                "seed": args.seed * 1000 + w,
            }
            workers.append(Worker(config, workdir / f"{server_name}-{workload}-{w}.log"))
        for worker in workers:
            worker.expect("READY", 120)
        t0 = time.monotonic() + 0.3
        for worker in workers:
            worker.send(f"GO {t0!r}")
        t_meas = t0 + args.warmup
        time.sleep(max(0.0, t_meas - time.monotonic()))
        cpu_start = cpu_ticks(server.proc.pid)
        time.sleep(max(0.0, t_meas + args.duration - time.monotonic()))
        result.server_cpu = 100.0 * (cpu_ticks(server.proc.pid) - cpu_start) / args.duration
        for w, worker in enumerate(workers):
            summary = json.loads(worker.expect("RESULT", args.drain + 90))
            samples = workdir / f"{server_name}-{workload}-{w}.lat"
            for path, target in ((samples, result.latencies), (Path(str(samples) + ".lag"), result.send_lag)):
                data = array("d")
                data.frombytes(path.read_bytes())
                target.extend(data)
            result.sent += summary["sent"]
            result.expected += summary["expected"]
            result.received += summary["received"]
            result.foreign += summary["foreign"]
            result.reconnects += summary["reconnects"]
            result.drained_s = max(result.drained_s, summary["drained_s"])
            result.loadgen_cpu.append(summary["cpu_percent"])
            for code, n in summary["errors"].items():
                result.errors[code] = result.errors.get(code, 0) + n
    finally:
        for worker in workers:
            worker.stop()
    if server.proc.poll() is not None:
        raise RuntimeError(f"{server_name} died during {workload}:\n{server.tail()}")
    return result


# ---- report --------------------------------------------------------------------------------------
def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def build_results(measured: dict[tuple[str, str], Measurement], workloads: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for workload in workloads:
        for figure in FIGURES:
            row: dict[str, Any] = {}
            for server in SERVERS:
                m = measured.get((server, workload))
                row[server] = m.figures()[figure] if m else None
            row["ratio"] = ratio(row["trinity"], row["raw_websockets"])
            row["ratio_python_socketio"] = ratio(row["trinity"], row["python_socketio"])
            out[f"{workload}_{figure}"] = row
    return out


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def print_table(results: dict[str, dict[str, Any]], measured: dict[tuple[str, str], Measurement], args: argparse.Namespace) -> None:
    cols = ("trinity", "raw_websockets", "python_socketio", "ratio", "ratio_python_socketio")
    heads = ("trinity", "raw_websockets", "python_socketio", "ratio vs raw", "ratio vs socketio")
    width = max(len(k) for k in results) + 2
    print()
    print(f"fan-out: {args.rooms} rooms x {args.clients} clients x {args.rate:g} msg/s, warm-up {args.warmup:g}s, measured {args.duration:g}s, {args.procs} load-generator process(es)")
    print("".ljust(width) + "".join(h.rjust(18) for h in heads))
    for key, row in results.items():
        print(key.ljust(width) + "".join(fmt(row[c]).rjust(18) for c in cols))
    print()
    print("details (server cpu = % of one core during the window; loadgen cpu per process):")
    for (server, workload), m in measured.items():
        extra = f" errors={m.errors}" if m.errors else ""
        extra += f" unexpected_frames={m.foreign}" if m.foreign else ""
        print(
            f"  {server:16s} {workload:12s} sent={m.sent:,} expected={m.expected:,} received={m.received:,} "
            f"p90={fmt(_round(m.percentile(90)))}ms max={fmt(_round(max(m.latencies, default=float('nan'))))}ms "
            f"send-lag p99={fmt(_round(m.percentile(99, m.send_lag)))}ms reconnects={m.reconnects} "
            f"server cpu={m.server_cpu:.0f}% loadgen cpu={'/'.join(f'{c:.0f}%' for c in m.loadgen_cpu if c is not None)}{extra}"
        )
    print()
    for workload in args.workloads:
        p99 = results[f"{workload}_p99_ms"]
        if p99["trinity"] is None:
            continue
        vs_raw = "met" if p99["ratio"] is not None and p99["ratio"] <= 1.5 else "MISSED"
        vs_sio = "met" if p99["ratio_python_socketio"] is not None and p99["ratio_python_socketio"] < 1.0 else "MISSED"
        print(f"  target {workload}: trinity p99 <= 1.5x raw floor: {vs_raw} ({fmt(p99['ratio'])}x); better than python-socketio: {vs_sio} ({fmt(p99['ratio_python_socketio'])}x)")
    print()


def write_results(path: Path, fanout: dict[str, Any]) -> None:
    data: dict[str, Any] = {}
    if path.exists():
        with contextlib.suppress(ValueError):
            loaded = json.loads(path.read_text())
            if isinstance(loaded, dict):
                data = loaded
    data["fanout"] = fanout
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="trinity-bench-fanout-"))
    measured: dict[tuple[str, str], Measurement] = {}
    started = time.monotonic()
    try:
        for server_name in args.servers:
            print(f"[fanout] starting {server_name}", flush=True)
            server, rooms = start_server(server_name, args, workdir)
            try:
                for workload in args.workloads:
                    print(f"[fanout]   {workload}: {args.rooms}x{args.clients} clients, {args.warmup:g}s warm-up + {args.duration:g}s", flush=True)
                    m = measure(server, server_name, workload, rooms[workload], args, workdir)
                    measured[(server_name, workload)] = m
                    f = m.figures()
                    print(f"[fanout]   -> p50 {fmt(f['p50_ms'])} ms, p99 {fmt(f['p99_ms'])} ms, {fmt(f['delivered_per_s'])} delivered/s, lost {f['lost']}", flush=True)
            finally:
                server.stop()
    finally:
        if args.keep:
            print(f"[fanout] kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results = build_results(measured, args.workloads)
    print_table(results, measured, args)
    print(f"[fanout] total {time.monotonic() - started:.0f}s")
    if not args.no_write:
        write_results(args.results, results)
        print(f"[fanout] wrote the 'fanout' key of {args.results}")
    return results
