"""Run Trinity's benchmarks.

    python bench/run.py                 # every benchmark found in bench/ (currently: fanout)
    python bench/run.py fanout          # only these
    python bench/run.py fanout -- --duration 5 --rooms 4   # arguments after -- go to each benchmark

A benchmark is a module or package `bench/<name>` exposing `main(argv) -> dict`; it prints its own
table and merges its figures into bench/results.json under its own key.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
NOT_BENCHMARKS = {"run"}


def discover() -> dict[str, ModuleType]:
    found = {}
    for info in sorted(pkgutil.iter_modules([str(BENCH)]), key=lambda i: i.name):
        if info.name in NOT_BENCHMARKS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if callable(getattr(module, "main", None)):
            found[info.name] = module
    return found


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, passthrough = argv[:at], argv[at + 1 :]
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    benchmarks = discover()
    names = argv or list(benchmarks)
    unknown = [n for n in names if n not in benchmarks]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {sorted(benchmarks)}", file=sys.stderr)
        return 2
    for name in names:
        started = time.monotonic()
        print(f"== {name}", flush=True)
        benchmarks[name].main(passthrough)
        print(f"== {name} done in {time.monotonic() - started:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    # `python bench/run.py` puts bench/ first on sys.path; the benchmarks import as `bench.<name>`.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
    sys.path.insert(0, str(REPO))
    sys.exit(main())
