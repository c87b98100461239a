"""Cross-instance fan-out benchmark: bench/fanout's load (R rooms x C clients, each sending at a
fixed rate; the workloads "annotations" and "pointers") against Trinity as several instances, each
room's clients split over them, compared with one instance in the same run. Setups:

  cluster        `--instances` (2) `python -m server.cli serve` processes on one fresh PostgreSQL
                 database and the real Redis (TRINITY_REDIS_URL: the Redis event bus); client k of
                 each room connects to instance k mod n, so half of a room's deliveries cross
                 instances (through Redis) and half stay on the sender's instance
  single         one instance on the same PostgreSQL database (other rooms), in-process event bus:
                 what the cluster is compared with
  single_redis   one instance on the same PostgreSQL with the Redis event bus (every event is also
                 written to its stream, nobody else reads it): separates the cost of publishing to
                 Redis from the cost of crossing instances
  single_sqlite  one instance on SQLite, in-process bus (bench/fanout's Trinity)

The database is created for the run (`CREATE DATABASE bench_<random>` through the `test` database
of the server at --pg-admin-url), migrated, seeded, and dropped at the end; the Redis streams and
presence hashes of the benchmark's rooms are deleted too. All servers are started first and stay
up; each workload runs against the setups back to back, each run starting once every server is
idle again (a backlog left by the previous run would disturb it). Seeding, the load generator, the
statistics and the noise guard are bench/fanout's (the database and Redis serving the setup count
as part of the benchmark, not as noise).

    python -m bench.fanout_cluster [--rooms 10 --clients 10 --rate 20 --duration 10 ...]
    python bench/run.py fanout_cluster

Prints a table and replaces the "fanout_cluster" key of bench/results.json (other keys are kept):
per workload and figure (p50_ms, p99_ms, delivered_per_s, lost) the cluster as "trinity", the
single instance on PostgreSQL as "single_instance", their ratio and difference ("delta_ms" for the
latencies, "delta" otherwise), the other measured setups by name, and for the latencies the
cluster's deliveries that crossed instances alone ("trinity_cross_instance").
Target (issue "Scale-out"): cluster p99 at most 3 ms above the single instance, nothing lost.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.fanout import (
    FIGURES,
    NOISY_CPU,
    REPO,
    Measurement,
    Rooms,
    ServerProcess,
    _mean,
    _round,
    add_load_arguments,
    check_load_arguments,
    child_env,
    code_version,
    cpu_between,
    fmt,
    free_port,
    measure,
    measure_until_quiet,
    processes_cpu,
    ratio,
    seed_trinity,
    seed_trinity_setups,
    trinity_env,
    write_results,
)

KEY = "fanout_cluster"
TAG = "fanout_cluster"
SETUPS = ("single", "cluster", "single_sqlite", "single_redis")
DEFAULT_SETUPS = ("cluster", "single", "single_redis", "single_sqlite")
COLUMNS = {"cluster": "trinity", "single": "single_instance"}  # results keys; other setups by name
P99_TARGET_DELTA_MS = 3.0


@dataclass
class Setup:
    name: str
    database: str  # "postgresql" | "sqlite"
    redis: bool
    instances: list[ServerProcess]
    rooms: Rooms

    def describe(self) -> str:
        n = len(self.instances)
        bus = "Redis bus" if self.redis else "in-process bus"
        return (
            f"{n} instance{'s' if n > 1 else ''}, {'PostgreSQL' if self.database == 'postgresql' else 'SQLite'}, {bus}"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench.fanout_cluster",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_load_arguments(parser)
    add = parser.add_argument
    add("--instances", type=int, default=2, help="Trinity instances of the cluster, default 2")
    add(
        "--setups",
        default=",".join(DEFAULT_SETUPS),
        help=f"subset of {','.join(SETUPS)} (default {','.join(DEFAULT_SETUPS)}); cluster and single are compared",
    )
    add(
        "--pg-admin-url",
        default=os.environ.get("TRINITY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="an existing database to connect to for CREATE/DROP DATABASE (default: the tests' `test`)",
    )
    add(
        "--redis-url",
        default=os.environ.get("TRINITY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="the Redis the cluster shares, default redis://127.0.0.1:6379/0",
    )
    args = parser.parse_args(argv)
    args.setups = [s for s in args.setups.split(",") if s]
    for name in args.setups:
        if name not in SETUPS:
            parser.error(f"unknown setup {name!r}")
    if args.instances < 2:
        parser.error("need --instances >= 2")
    return check_load_arguments(parser, args)


# ---- services ------------------------------------------------------------------------------------
def _admin_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[tuple[str, str]]:
    """(url, name) of a new, empty PostgreSQL database; dropped afterwards."""
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(_admin_url(admin_url), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise SystemExit(f"[{TAG}] PostgreSQL not reachable at {admin_url}: {exc}\nStart it: make services") from exc
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{_admin_url(admin_url).rsplit('/', 1)[0]}/{name}", name
    finally:
        with psycopg.connect(_admin_url(admin_url), autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def check_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        raise SystemExit(f"[{TAG}] Redis not reachable at {url}: {exc}\nStart it: make services") from exc


def forget_rooms(url: str, room_ids: list[str]) -> None:
    """Delete the Redis streams and presence hashes of the benchmark's rooms."""
    import redis

    keys = [k for r in room_ids for k in (f"trinity:room:{r}:bus", f"trinity:presence:{r}")]
    with contextlib.suppress(redis.RedisError), redis.Redis.from_url(url, socket_connect_timeout=2) as client:
        for at in range(0, len(keys), 500):
            client.delete(*keys[at : at + 500])


def _processes(comm: str) -> Iterator[tuple[int, str]]:
    """(pid, command line) of the processes named `comm`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != comm:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        yield int(entry.name), cmdline


def service_pids(database: str | None, redis_port: int | None) -> Callable[[], list[int]]:
    """The processes serving a setup: PostgreSQL's own processes and its backends connected to
    `database` (not those of other databases: another session's tests are noise), and Redis."""
    client = re.compile(r"\(\d+\)|\[local\]")

    def find() -> list[int]:
        pids = []
        if database:
            for pid, cmdline in _processes("postgres"):
                if database in cmdline.split() or not client.search(cmdline):
                    pids.append(pid)
        if redis_port:
            pids += [pid for pid, cmdline in _processes("redis-server") if f":{redis_port}" in cmdline]
        return pids

    return find


def redis_port(url: str) -> int:
    from urllib.parse import urlsplit

    return urlsplit(url).port or 6379


# ---- servers -------------------------------------------------------------------------------------
def start_instance(name: str, env: dict[str, str], workdir: Path) -> ServerProcess:
    port = free_port()
    cmd = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return ServerProcess(name, cmd, child_env(env), workdir, port)


def start_setups(
    args: argparse.Namespace, workdir: Path, database_url: str, secret: str, stack: contextlib.ExitStack
) -> dict[str, Setup]:
    pg_setups = [s for s in args.setups if s != "single_sqlite"]
    pg_data = workdir / "pg-data"
    pg_rooms = seed_trinity_setups(pg_data, secret, args, pg_setups, database_url) if pg_setups else {}
    setups: dict[str, Setup] = {}
    for name in args.setups:
        if name == "single_sqlite":
            data_dir = workdir / "sqlite-data"
            rooms = seed_trinity(data_dir, secret, args)
            env = trinity_env(data_dir, secret, args)
            setup = Setup(name, "sqlite", False, [], rooms)
        else:
            redis = name in ("cluster", "single_redis")
            env = trinity_env(pg_data, secret, args, database_url, args.redis_url if redis else "")
            setup = Setup(name, "postgresql", redis, [], pg_rooms[name])
        count = args.instances if name == "cluster" else 1
        for i in range(count):
            instance = start_instance(f"{name}-{i + 1}" if count > 1 else name, env, workdir)
            setup.instances.append(instance)
            stack.callback(instance.stop)
        setups[name] = setup
    for setup in setups.values():
        for instance in setup.instances:
            instance.wait_ready(f"http://127.0.0.1:{instance.port}/readyz")
        ports = ", ".join(str(i.port) for i in setup.instances)
        pids = ", ".join(str(i.proc.pid) for i in setup.instances)
        print(f"[{TAG}] {setup.name} up: {setup.describe()}; port(s) {ports} (pid {pids})", flush=True)
    return setups


def settle(setups: dict[str, Setup], timeout: float = 20.0, idle_cpu: float = 10.0) -> None:
    """Wait (at most `timeout` s) until all servers together use < idle_cpu % of a core."""
    pids = [i.proc.pid for s in setups.values() for i in s.instances]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = processes_cpu(pids)
        time.sleep(0.25)
        if 100.0 * cpu_between(before, processes_cpu(pids)) / 0.25 < idle_cpu:
            return
    print(f"[{TAG}] servers still busy after {timeout:g}s; measuring anyway", flush=True)


# ---- report --------------------------------------------------------------------------------------
def split(m: Measurement) -> tuple[array, array]:
    """The cluster's latencies of deliveries across instances and within the sender's instance."""
    cross, local = array("d"), array("d")
    for latency, crossed in zip(m.latencies, m.cross_instance, strict=True):
        (cross if crossed else local).append(latency)
    return cross, local


def build_results(measured: dict[tuple[str, str], Measurement], args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, dict[str, Any]] = {}
    for workload in args.workloads:
        figures = {s: m.figures() for (s, w), m in measured.items() if w == workload}
        cluster = measured.get(("cluster", workload))
        cross = split(cluster)[0] if cluster is not None and cluster.cross_instance else None
        for figure in FIGURES:
            row: dict[str, Any] = {}
            for setup in args.setups:
                row[COLUMNS.get(setup, setup)] = figures[setup][figure] if setup in figures else None
            x, y = row.get("trinity"), row.get("single_instance")
            row["ratio"] = ratio(x, y)
            delta = None if x is None or y is None else _round(x - y, 3 if figure.endswith("_ms") else 1)
            row["delta_ms" if figure.endswith("_ms") else "delta"] = delta
            if figure in ("p50_ms", "p99_ms") and cross is not None:
                row["trinity_cross_instance"] = _round(Measurement.percentile(cross, float(figure[1:3])))
            out[f"{workload}_{figure}"] = row
    return out


def print_table(
    results: dict[str, Any],
    measured: dict[tuple[str, str], Measurement],
    setups: dict[str, Setup],
    args: argparse.Namespace,
) -> None:
    columns = [COLUMNS.get(s, s) for s in args.setups]
    heads = [*columns, "ratio", "delta", "cross-inst."]
    width = max(len(k) for k in results) + 2
    print()
    print(
        f"cross-instance fan-out: {args.rooms} rooms x {args.clients} clients x {args.rate:g} msg/s, "
        f"{args.warmup:g}s warm-up, {args.duration:g}s measured x {args.repeat}, "
        f"{args.procs} load-generator process(es), {os.cpu_count()} CPUs, server code {code_version()}"
    )
    for name, setup in setups.items():
        print(f"  {COLUMNS.get(name, name):24s} {name}: {setup.describe()}")
    print("  ratio, delta: trinity (cluster) vs single_instance; cross-inst.: the cluster's deliveries whose sender")
    print("  was connected to the other instance (through Redis); the others stayed on the sender's instance")
    if args.no_client_replica:
        print("DIAGNOSTIC: Trinity clients skipped RoomClient's replica (--no-client-replica)")
    if args.trinity_env:
        print(f"DIAGNOSTIC: Trinity settings changed: {' '.join(args.trinity_env)}")
    print("".ljust(width) + "".join(h.rjust(16) for h in heads))
    for key, row in results.items():
        values = [row.get(c) for c in columns]
        values += [row["ratio"], row.get("delta_ms", row.get("delta")), row.get("trinity_cross_instance")]
        print(key.ljust(width) + "".join(fmt(v).rjust(16) for v in values))
    print()
    print("details (cpu in % of one core during the window: server = all instances; services = the database")
    print("backends and Redis; other = processes not in the benchmark)")
    for (name, workload), m in measured.items():
        p90 = _round(Measurement.percentile(m.latencies, 90))
        top = _round(max(m.latencies, default=float("nan")))
        lag = _round(Measurement.percentile(m.send_lag, 99))
        loadgen = "/".join(f"{c:.0f}" for c in m.loadgen_cpu[: args.procs])
        notes = f" errors={m.errors}" if m.errors else ""
        notes += f" unexpected_frames={m.unexpected}" if m.unexpected else ""
        service = f" services={_mean(m.service_cpu):.0f}" if m.service_cpu else ""
        print(
            f"  {name:13s} {workload:11s} sent={m.sent:,} expected={m.expected:,} "
            f"received={m.received:,} p90={fmt(p90)}ms max={fmt(top)}ms send-lag p99={fmt(lag)}ms "
            f"reconnects={m.reconnects} cpu: server={_mean(m.server_cpu):.0f}{service} "
            f"loadgen={loadgen} other={max(0.0, max(m.other_cpu, default=0.0)):.0f}{notes}"
        )
        if m.cross_instance:
            cross, local = split(m)
            print(
                f"  {'':13s} {'':11s} across instances: n={len(cross):,} "
                f"p50={fmt(_round(Measurement.percentile(cross, 50)))}ms "
                f"p99={fmt(_round(Measurement.percentile(cross, 99)))}ms; "
                f"same instance: n={len(local):,} p50={fmt(_round(Measurement.percentile(local, 50)))}ms "
                f"p99={fmt(_round(Measurement.percentile(local, 99)))}ms"
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
        p99, lost = results[f"{workload}_p99_ms"], results[f"{workload}_lost"]
        if p99.get("trinity") is None or p99.get("single_instance") is None:
            continue
        delta = p99["delta_ms"]
        p99_ok = "met" if delta is not None and delta <= P99_TARGET_DELTA_MS else "MISSED"
        if p99.get("trinity_cross_instance") is None:
            p99_ok = "NOT MEASURABLE, no delivery crossed instances"
        lost_ok = "met" if lost["trinity"] == 0 else "MISSED"
        print(
            f"  target {workload}: cluster p99 at most {P99_TARGET_DELTA_MS:g} ms above single instance: "
            f"{p99_ok} ({fmt(p99['trinity'])} vs {fmt(p99['single_instance'])} ms, {delta:+.2f} ms); "
            f"zero lost: {lost_ok} ({fmt(lost['trinity'])})"
        )
    print()


# ---- main ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    uses_redis = any(s in ("cluster", "single_redis") for s in args.setups)
    if uses_redis:
        check_redis(args.redis_url)
    workdir = Path(tempfile.mkdtemp(prefix="trinity-bench-fanout-cluster-"))
    measured: dict[tuple[str, str], Measurement] = {}
    started = time.monotonic()
    setups: dict[str, Setup] = {}
    try:
        with contextlib.ExitStack() as stack:
            database_url, database = stack.enter_context(fresh_database(args.pg_admin_url))
            print(f"[{TAG}] database {database} (dropped at the end)", flush=True)
            secret = secrets.token_hex(32)
            setups = start_setups(args, workdir, database_url, secret, stack)
            finders = {
                name: service_pids(
                    database if s.database == "postgresql" else None,
                    redis_port(args.redis_url) if s.redis else None,
                )
                for name, s in setups.items()
            }
            runs = dict.fromkeys(setups, 0)
            for workload in args.workloads:
                for repeat in range(args.repeat):
                    for name, setup in setups.items():

                        def once(setup: Setup = setup, workload: str = workload) -> Measurement:
                            settle(setups)
                            runs[setup.name] += 1  # a noisy run's annotation ids are used: next is a new run
                            return measure(
                                setup.instances,
                                "trinity",
                                workload,
                                setup.rooms[workload],
                                runs[setup.name] - 1,
                                args,
                                workdir,
                                label=setup.name,
                                services=finders[setup.name],
                            )

                        title = f"{workload} on {name} ({repeat + 1})"
                        m = measure_until_quiet(TAG, title, once, args.retries)
                        measured.setdefault((name, workload), Measurement()).merge(m)
        # The servers stopped (ExitStack, last in first out) before the database was dropped.
    finally:
        redis_rooms = [r["id"] for s in setups.values() if s.redis for rs in s.rooms.values() for r in rs]
        if redis_rooms:
            forget_rooms(args.redis_url, redis_rooms)
        if args.keep:
            print(f"[{TAG}] kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results = build_results(measured, args)
    print_table(results, measured, setups, args)
    print(f"[{TAG}] {time.monotonic() - started:.0f}s")
    noisy = any(m.noisy for m in measured.values())
    if args.no_write:
        pass
    elif noisy and not args.force_write:
        print(f"[{TAG}] NOT writing {args.results}: noisy measurements (see above); --force-write to override")
    else:
        write_results(args.results, results, KEY)
        print(f"[{TAG}] replaced the {KEY!r} key of {args.results}")
    return results
