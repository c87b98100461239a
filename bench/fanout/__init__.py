"""Fan-out benchmark: R rooms x C clients, each sending at a fixed rate; end-to-end latency (the
sender's send instant to each other client's receipt, on one CLOCK_MONOTONIC) and delivered
messages/s of three servers under the same load, measured in the same run:

  trinity          the real server (`python -m server.cli serve`), temp data dir, SQLite
  raw_websockets   a bare `websockets` relay (bench/fanout/raw_server.py): the floor
  python_socketio  python-socketio ASGI app under uvicorn, rooms, emit to the room minus the sender

and two workloads:

  annotations  persisted ops: Trinity gets `annotation.create` ops (unique ids, the label carries
               the send time) and the measured delivery is the `event` frame at the other clients;
               the peers relay the same op frame as an opaque JSON message.
  pointers     ephemeral `{"type": "pointer", "point": [t, k, sender]}` frames.

Every server is its own process; all three are started first and stay up, and each workload runs
against the three servers back to back, so a burst of outside load hurts one comparison less. The
load generator is `--procs` worker processes (bench/fanout/loadgen.py), the same for all servers,
each owning whole rooms. After `--warmup` seconds a window of `--duration` seconds is measured:
every message sent in it must reach the C-1 other clients of its room; what has not arrived
`--drain` seconds after the window is `lost`.

    python -m bench.fanout [--rooms 10 --clients 10 --rate 20 --duration 10 ...]
    python bench/run.py fanout

Prints a table and replaces the "fanout" key of bench/results.json (other keys are kept). CPU use
of the machine is watched during each window: a measurement during which processes outside the
benchmark used more than a quarter of a core is repeated (`--retries`), and if it stays noisy the
results file is left alone (`--force-write` overrides).
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
RESULTS = REPO / "bench" / "results.json"
SERVERS = ("trinity", "raw_websockets", "python_socketio")
WORKLOADS = ("annotations", "pointers")
FIGURES = ("p50_ms", "p99_ms", "delivered_per_s", "lost")
PASSWORD = "bench-password-0123"
NOISY_CPU = 25.0  # % of one core used by processes outside the benchmark during a window
Rooms = dict[str, list[dict[str, Any]]]  # workload -> [{"id", "clients", "tokens"}]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench.fanout",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_load_arguments(parser, servers=True)
    args = parser.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s]
    for name in args.servers:
        if name not in SERVERS:
            parser.error(f"unknown server {name!r}")
    return check_load_arguments(parser, args)


def add_load_arguments(parser: argparse.ArgumentParser, *, servers: bool = False) -> None:
    """The options of the load and of the measurement, shared with the benchmarks built on this one."""
    add = parser.add_argument
    add("--rooms", type=int, default=10, help="rooms (R), default 10")
    add("--clients", type=int, default=10, help="clients per room (C), default 10")
    add("--rate", type=float, default=20.0, help="messages/s each client sends, default 20")
    add("--warmup", type=float, default=2.0, help="seconds of load before the window, default 2")
    add("--duration", type=float, default=10.0, help="measured window in seconds, default 10")
    add("--drain", type=float, default=5.0, help="max seconds to wait for late deliveries")
    add("--repeat", type=int, default=1, help="measure each server/workload N times, pooled")
    add(
        "--retries",
        type=int,
        default=1,
        help=f"measure again (at most N times) when other processes used > {NOISY_CPU:g}%% of a core",
    )
    add("--force-write", action="store_true", help="write the results even if a measurement was noisy")
    add("--procs", type=int, default=2, help="load-generator processes, default 2")
    if servers:
        add("--servers", default=",".join(SERVERS), help=f"subset of {','.join(SERVERS)}")
    add("--workloads", default=",".join(WORKLOADS), help=f"subset of {','.join(WORKLOADS)}")
    add(
        "--trinity-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="diagnostic: a setting for the Trinity server, e.g. SQLITE_SYNCHRONOUS=FULL "
        "(repeatable; implies --no-write)",
    )
    add("--results", type=Path, default=RESULTS, help="JSON file to merge the figures into")
    add("--no-write", action="store_true", help="print only; leave the results file alone")
    add("--keep", action="store_true", help="keep the temp directory (server logs, samples)")
    add("--seed", type=int, default=1, help="seed of the clients' send phases")
    add(
        "--no-client-replica",
        action="store_true",
        help="diagnostic: Trinity clients only track the sequence number instead of applying each "
        "event to RoomClient's replica, to separate server latency from the client state "
        "machine's cost (implies --no-write)",
    )


def check_load_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    args.workloads = [w for w in args.workloads.split(",") if w]
    for name in args.workloads:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}")
    if min(args.rooms, args.procs, args.repeat) < 1 or args.clients < 2 or args.retries < 0:
        parser.error("need rooms, procs, repeat >= 1, clients >= 2 and retries >= 0")
    if args.rate <= 0 or args.duration <= 0 or args.warmup < 0 or args.drain < 0:
        parser.error("need rate > 0, duration > 0, warmup >= 0, drain >= 0")
    args.procs = min(args.procs, args.rooms)
    if args.no_client_replica or args.trinity_env:
        args.no_write = True  # diagnostic runs do not replace the recorded figures
    return args


# ---- processes -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # No TRINITY_* variable is inherited by accident: the server gets exactly the settings below.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRINITY_")}
    paths = [str(REPO), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra or {})
    return env


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return float("nan"), float("nan")
    tick = os.sysconf("SC_CLK_TCK")
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / tick, sum(values) / tick


def process_cpu(pid: int) -> float:
    """utime + stime of a process (all its threads) in seconds, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def processes_cpu(pids: list[int]) -> dict[int, float]:
    """utime + stime of each process that still exists."""
    found = {pid: process_cpu(pid) for pid in pids}
    return {pid: cpu for pid, cpu in found.items() if not math.isnan(cpu)}


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two `processes_cpu` readings; a process that appeared in between
    counts from zero, one that ended in between is not counted."""
    return sum(max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in after.items())


class ServerProcess:
    """A server under test, in its own process (and session, so it is stopped by its pid only)."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], workdir: Path, port: int) -> None:
        self.name = name
        self.port = port
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, ready_url: str | None, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
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
        raise RuntimeError(f"{self.name} not ready within {timeout:.0f}s:\n{self.tail()}")

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
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.fanout.loadgen"],
            cwd=REPO,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,
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
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                code = self.proc.wait()
                raise RuntimeError(f"load generator exited ({code}) before {prefix}:\n{self.tail()}")
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
        raise RuntimeError(f"load generator: no {prefix} within {timeout:.0f}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._log.close()


# ---- servers -------------------------------------------------------------------------------------
def seed_trinity(data_dir: Path, secret: str, args: argparse.Namespace, database_url: str = "") -> Rooms:
    """Users bench0..bench{C-1} of one site (bench0 owns the rooms, the others participate) in R
    rooms per workload, written into the database the server will open (SQLite under data_dir
    unless database_url is set, migrated first); a token each."""
    return seed_trinity_setups(data_dir, secret, args, [""], database_url)[""]


def seed_trinity_setups(
    data_dir: Path, secret: str, args: argparse.Namespace, setups: list[str], database_url: str = ""
) -> dict[str, Rooms]:
    """`seed_trinity` with R rooms per workload for each of several setups measured on one
    database (the same users and tokens), so no setup replays another's room log."""
    from server.accounts import service as accounts
    from server.core import auth
    from server.core.db import Database
    from server.core.migrate import upgrade
    from server.rooms import repository as rooms
    from server.settings import Settings

    settings = Settings(environment="development", data_dir=data_dir, database_url=database_url, secret_key=secret)
    upgrade(settings.effective_database_url)
    db = Database(settings)
    out: dict[str, Rooms] = {}
    try:
        with db.session() as session:
            accounts.create_site(session, site_id="bench-site", name="Bench Hospital")
            users = [
                accounts.create_user(
                    session,
                    site_id="bench-site",
                    username=f"bench{i}",
                    password=PASSWORD,
                    role="surgeon" if i == 0 else "engineer",
                    display_name=f"Bench {i}",
                )
                for i in range(args.clients)
            ]
            first = users[0]
            owner = auth.Principal(first.id, first.site_id, first.role, first.display_name)
            tokens = [auth.login(session, settings, u.username, PASSWORD).access_token for u in users]
            for setup in setups:
                out[setup] = {}
                for workload in args.workloads:
                    out[setup][workload] = []
                    for r in range(args.rooms):
                        title = " ".join(["bench", *([setup] if setup else []), workload, str(r)])
                        room = rooms.create_room(session, owner, kind="consultation", title=title, case_id=None)
                        for user in users[1:]:
                            rooms.add_member(session, owner, room.id, user.id, "participant")
                        out[setup][workload].append({"id": room.id, "clients": args.clients, "tokens": tokens})
    finally:
        db.close()
    return out


def trinity_env(
    data_dir: Path, secret: str, args: argparse.Namespace, database_url: str = "", redis_url: str = ""
) -> dict[str, str]:
    env = {
        "TRINITY_DATA_DIR": str(data_dir),
        "TRINITY_DATABASE_URL": database_url,  # empty: SQLite under the data dir
        "TRINITY_REDIS_URL": redis_url,  # empty: the in-process event bus
        "TRINITY_SECRET_KEY": secret,
        "TRINITY_LOG_LEVEL": "WARNING",
        # The pointer throttle is twice the send rate, not the send rate. With the throttle at
        # exactly the send rate, two pointer frames of one client that reach the server less than
        # 1/rate apart (scheduling and network jitter always produce some) would have the second
        # held back until the interval has passed: a delay made by the benchmark's own jitter
        # meeting the throttle, which is not the fan-out latency measured here. At 2x the rate the
        # throttle only engages when a client really sends faster than 2x the rate.
        "TRINITY_POINTER_MAX_HZ": f"{2 * args.rate:g}",
        # The per-connection rate limit (default 60/s, burst 120) must never drop benchmark frames.
        "TRINITY_WS_RATE_PER_S": f"{max(60.0, 3 * args.rate):g}",
        "TRINITY_WS_RATE_BURST": str(max(120, math.ceil(6 * args.rate))),
        "TRINITY_ROOM_MAX_ONLINE": str(max(50, args.clients)),
    }
    for item in args.trinity_env:
        key, _, value = item.partition("=")
        key = key.upper()
        env[key if key.startswith("TRINITY_") else f"TRINITY_{key}"] = value
    return env


def start_servers(args: argparse.Namespace, workdir: Path) -> dict[str, tuple[ServerProcess, Rooms]]:
    started: dict[str, tuple[ServerProcess, Rooms]] = {}
    try:
        for name in args.servers:
            port = free_port()
            host = ["--host", "127.0.0.1", "--port", str(port)]
            if name == "trinity":
                data_dir, secret = workdir / "trinity-data", secrets.token_hex(32)
                rooms = seed_trinity(data_dir, secret, args)
                cmd = [sys.executable, "-m", "server.cli", "serve", *host]
                env = child_env(trinity_env(data_dir, secret, args))
                ready: str | None = f"http://127.0.0.1:{port}/readyz"
            else:
                module = "raw_server" if name == "raw_websockets" else "sio_server"
                cmd = [sys.executable, "-m", f"bench.fanout.{module}", *host]
                env, ready = child_env(), None
                rooms = {
                    w: [{"id": f"{w}-{r}", "clients": args.clients} for r in range(args.rooms)] for w in args.workloads
                }
            server = ServerProcess(name, cmd, env, workdir, port)
            started[name] = (server, rooms)
            server.wait_ready(ready)
            print(f"[fanout] {name} up on port {port} (pid {server.proc.pid})", flush=True)
    except BaseException:
        for server, _ in started.values():
            server.stop()
        raise
    return started


# ---- measuring -----------------------------------------------------------------------------------
@dataclass
class Measurement:
    """One server x workload, pooled over --repeat runs."""

    latencies: array = field(default_factory=lambda: array("d"))  # ms
    send_lag: array = field(default_factory=lambda: array("d"))  # ms behind the send schedule
    duration: float = 0.0
    sent: int = 0
    expected: int = 0
    received: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    unexpected: int = 0
    reconnects: int = 0
    server_cpu: list[float] = field(default_factory=list)  # % of one core, per run (all instances)
    loadgen_cpu: list[float] = field(default_factory=list)  # % of one core, per process and run
    service_cpu: list[float] = field(default_factory=list)  # the database and Redis serving it, per run
    other_cpu: list[float] = field(default_factory=list)  # the machine minus the benchmark, per run
    cross_instance: array = field(default_factory=lambda: array("b"))  # per latency: 1 = sender elsewhere

    @staticmethod
    def percentile(values: array, p: float) -> float | None:
        if not values:
            return None
        data = sorted(values)
        return data[max(0, math.ceil(p / 100.0 * len(data)) - 1)]

    @property
    def noisy(self) -> bool:
        return max(self.other_cpu, default=0.0) > NOISY_CPU

    def merge(self, other: Measurement) -> None:
        self.latencies.extend(other.latencies)
        self.send_lag.extend(other.send_lag)
        self.duration += other.duration
        self.sent += other.sent
        self.expected += other.expected
        self.received += other.received
        for code, n in other.errors.items():
            self.errors[code] = self.errors.get(code, 0) + n
        self.unexpected += other.unexpected
        self.reconnects += other.reconnects
        self.server_cpu += other.server_cpu
        self.loadgen_cpu += other.loadgen_cpu
        self.service_cpu += other.service_cpu
        self.other_cpu += other.other_cpu
        self.cross_instance.extend(other.cross_instance)

    def figures(self) -> dict[str, float | int | None]:
        return {
            "p50_ms": _round(self.percentile(self.latencies, 50)),
            "p99_ms": _round(self.percentile(self.latencies, 99)),
            "delivered_per_s": _round(self.received / self.duration, 1) if self.duration else None,
            "lost": max(0, self.expected - self.received),
        }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def measure(
    server: ServerProcess | list[ServerProcess],
    server_name: str,
    workload: str,
    rooms: list[dict[str, Any]],
    run: int,
    args: argparse.Namespace,
    workdir: Path,
    *,
    label: str | None = None,
    services: Callable[[], list[int]] | None = None,
) -> Measurement:
    """One run: start the workers, let them connect, start them together, collect their figures.
    `run` numbers the runs of a server: Trinity's annotation ids must not repeat in a room.

    Several servers are instances of one deployment: client k of each room connects to instance
    k mod n, and each latency is marked as crossing instances or not. `services` lists the pids of
    the processes serving the servers (database, Redis), which count as the benchmark's, not as
    noise; `label` names the sample files (default: server_name)."""
    instances = server if isinstance(server, list) else [server]
    into = Measurement()
    base = workdir / f"{label or server_name}-{workload}-{run}"
    base_urls = [f"http://127.0.0.1:{s.port}" for s in instances]
    workers: list[Worker] = []
    try:
        for w in range(args.procs):
            config = {
                "repo": str(REPO),
                "server": server_name,
                "base_url": base_urls[0],
                "workload": workload,
                "rooms": rooms[w :: args.procs],
                "run": run,
                "rate": args.rate,
                "warmup_s": args.warmup,
                "duration_s": args.duration,
                "drain_s": args.drain,
                "connect_timeout_s": 90,
                "samples_path": f"{base}-{w}.lat",
                "seed": args.seed * 1000 + run * 10 + w,
                "client_replica": not args.no_client_replica,
            }
            if len(base_urls) > 1:
                config["base_urls"] = base_urls
            workers.append(Worker(config, Path(f"{base}-{w}.log")))
        for worker in workers:
            worker.expect("READY", 120)
        t0 = time.monotonic() + 0.3
        for worker in workers:
            worker.send(f"GO {t0!r}")
        # CPU use during the window: the servers, each load generator, the services (database,
        # Redis) and the rest of the machine.
        t_meas = t0 + args.warmup
        time.sleep(max(0.0, t_meas - time.monotonic()))
        pids = [s.proc.pid for s in instances] + [w.proc.pid for w in workers]
        cpu0, (busy0, total0) = [process_cpu(pid) for pid in pids], machine_cpu()
        service0 = processes_cpu(services()) if services else {}
        time.sleep(max(0.0, t_meas + args.duration - time.monotonic()))
        cpu1, (busy1, total1) = [process_cpu(pid) for pid in pids], machine_cpu()
        service1 = processes_cpu(services()) if services else {}
        used = [100.0 * (b - a) / args.duration for a, b in zip(cpu0, cpu1, strict=True)]
        service = 100.0 * cpu_between(service0, service1) / args.duration
        machine = 100.0 * (os.cpu_count() or 1) * (busy1 - busy0) / max(total1 - total0, 1e-9)
        into.server_cpu.append(sum(used[: len(instances)]))
        into.loadgen_cpu.extend(used[len(instances) :])
        if services:
            into.service_cpu.append(service)
        into.other_cpu.append(machine - sum(used) - service)
        for w, worker in enumerate(workers):
            summary = json.loads(worker.expect("RESULT", args.drain + 90))
            for suffix, target in ((".lat", into.latencies), (".lat.lag", into.send_lag)):
                data = array("d")
                data.frombytes(Path(f"{base}-{w}{suffix}").read_bytes())
                target.extend(data)
            if len(base_urls) > 1:
                into.cross_instance.frombytes(Path(f"{base}-{w}.lat.cross").read_bytes())
            into.sent += summary["sent"]
            into.expected += summary["expected"]
            into.received += summary["received"]
            into.unexpected += summary["unexpected"]
            into.reconnects += summary["reconnects"]
            for code, n in summary["errors"].items():
                into.errors[code] = into.errors.get(code, 0) + n
        into.duration += args.duration
    finally:
        for worker in workers:
            worker.stop()
    for instance in instances:
        if instance.proc.poll() is not None:
            raise RuntimeError(f"{instance.name} died during {workload}:\n{instance.tail()}")
    return into


def measure_until_quiet(tag: str, title: str, once: Callable[[], Measurement], retries: int) -> Measurement:
    """Run `once` and print its figures; run it again (at most `retries` times) while the machine
    was noisy, and return the last run."""
    for attempt in range(retries + 1):
        print(f"[{tag}] {title}", end=" ", flush=True)
        m = once()
        f = m.figures()
        print(
            f"-> p50 {fmt(f['p50_ms'])} ms, p99 {fmt(f['p99_ms'])} ms, "
            f"{fmt(f['delivered_per_s'])} delivered/s, lost {f['lost']}"
            + (f"; NOISY (other processes {max(m.other_cpu):.0f}%)" if m.noisy else ""),
            flush=True,
        )
        if not m.noisy or attempt == retries:
            break
    return m


# ---- report --------------------------------------------------------------------------------------
def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def build_results(measured: dict[tuple[str, str], Measurement], workloads: list[str]) -> dict:
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
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


def code_version() -> str:
    """The commit the server under test was built from, '+dirty' when server/ has local changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "server"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if head.returncode == 0 else "unknown"


def print_table(
    results: dict[str, dict[str, Any]],
    measured: dict[tuple[str, str], Measurement],
    args: argparse.Namespace,
) -> None:
    columns = ("trinity", "raw_websockets", "python_socketio", "ratio", "ratio_python_socketio")
    heads = ("trinity", "raw_websockets", "python_socketio", "vs raw", "vs socketio")
    width = max(len(k) for k in results) + 2
    print()
    print(
        f"fan-out: {args.rooms} rooms x {args.clients} clients x {args.rate:g} msg/s, "
        f"{args.warmup:g}s warm-up, {args.duration:g}s measured x {args.repeat}, "
        f"{args.procs} load-generator process(es), {os.cpu_count()} CPUs, server code {code_version()}"
    )
    if args.no_client_replica:
        print("DIAGNOSTIC: Trinity clients skipped RoomClient's replica (--no-client-replica)")
    if args.trinity_env:
        print(f"DIAGNOSTIC: Trinity settings changed: {' '.join(args.trinity_env)}")
    print("".ljust(width) + "".join(h.rjust(16) for h in heads))
    for key, row in results.items():
        print(key.ljust(width) + "".join(fmt(row[c]).rjust(16) for c in columns))
    print()
    print("details (cpu in % of one core during the window; other = processes not in the benchmark)")
    for (server, workload), m in measured.items():
        p90 = _round(Measurement.percentile(m.latencies, 90))
        top = _round(max(m.latencies, default=float("nan")))
        lag = _round(Measurement.percentile(m.send_lag, 99))
        loadgen = "/".join(f"{c:.0f}" for c in m.loadgen_cpu[: args.procs])
        notes = f" errors={m.errors}" if m.errors else ""
        notes += f" unexpected_frames={m.unexpected}" if m.unexpected else ""
        print(
            f"  {server:15s} {workload:11s} sent={m.sent:,} expected={m.expected:,} "
            f"received={m.received:,} p90={fmt(p90)}ms max={fmt(top)}ms send-lag p99={fmt(lag)}ms "
            f"reconnects={m.reconnects} cpu: server={_mean(m.server_cpu):.0f} "
            f"loadgen={loadgen} other={max(0.0, max(m.other_cpu, default=0.0)):.0f}{notes}"
        )
    noisy = [f"{s}/{w}" for (s, w), m in measured.items() if m.noisy]
    if noisy:
        print(f"  WARNING: other processes used > {NOISY_CPU:g}% of a core during: {', '.join(noisy)}")
    lagging = [f"{s}/{w}" for (s, w), m in measured.items() if (Measurement.percentile(m.send_lag, 99) or 0.0) > 10]
    if lagging:
        print(
            "  WARNING: the load generator fell behind its schedule (send-lag p99 > 10 ms) during: "
            f"{', '.join(lagging)}; their latencies include the clients' own queueing"
        )
    print()
    for workload in args.workloads:
        p99 = results[f"{workload}_p99_ms"]
        if p99["trinity"] is None:
            continue
        vs_raw, vs_sio = p99["ratio"], p99["ratio_python_socketio"]
        raw_ok = "met" if vs_raw is not None and vs_raw <= 1.5 else "MISSED"
        sio_ok = "met" if vs_sio is not None and vs_sio < 1.0 else "MISSED"
        print(
            f"  target {workload}: trinity p99 within 1.5x of raw: {raw_ok} ({fmt(vs_raw)}x); "
            f"better than python-socketio: {sio_ok} ({fmt(vs_sio)}x)"
        )
    print()


def write_results(path: Path, fanout: dict[str, Any], key: str = "fanout") -> None:
    """Replace `key` of the results file, keeping the other keys."""
    data: dict[str, Any] = {}
    if path.exists():
        with contextlib.suppress(ValueError):
            loaded = json.loads(path.read_text())
            if isinstance(loaded, dict):
                data = loaded
    data[key] = fanout
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    workdir = Path(tempfile.mkdtemp(prefix="trinity-bench-fanout-"))
    measured: dict[tuple[str, str], Measurement] = {}
    started = time.monotonic()
    try:
        servers = start_servers(args, workdir)
        try:
            runs = dict.fromkeys(args.servers, 0)
            for workload in args.workloads:
                for repeat in range(args.repeat):
                    for name in args.servers:
                        server, rooms = servers[name]

                        def once(
                            server: ServerProcess = server,
                            name: str = name,
                            workload: str = workload,
                            rooms: Rooms = rooms,
                        ) -> Measurement:
                            runs[name] += 1  # a noisy run's annotation ids are used: the next one is a new run
                            return measure(server, name, workload, rooms[workload], runs[name] - 1, args, workdir)

                        title = f"{workload} on {name} ({repeat + 1})"
                        m = measure_until_quiet("fanout", title, once, args.retries)
                        measured.setdefault((name, workload), Measurement()).merge(m)
        finally:
            for server, _ in servers.values():
                server.stop()
    finally:
        if args.keep:
            print(f"[fanout] kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results = build_results(measured, args.workloads)
    print_table(results, measured, args)
    print(f"[fanout] {time.monotonic() - started:.0f}s")
    noisy = any(m.noisy for m in measured.values())
    if args.no_write:
        pass
    elif noisy and not args.force_write:
        print(f"[fanout] NOT writing {args.results}: noisy measurements (see above); --force-write to override")
    else:
        write_results(args.results, results)
        print(f"[fanout] replaced the 'fanout' key of {args.results}")
    return results
