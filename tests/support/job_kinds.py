"""Job kinds only the tests use; a Celery worker under test imports them with `-I tests.support.job_kinds`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from server.core.jobs import Progress, RetryableJobError, job_kind
from server.imaging.spool import remove_spool


@job_kind("selftest.flaky", timeout_s=60)
def flaky(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Fails with a retryable error on its first `fail_times` runs (counted in the file `counter`)."""
    counter = Path(params["counter"])
    runs = int(counter.read_text() or 0) + 1 if counter.exists() else 1
    counter.write_text(str(runs))
    if runs <= int(params.get("fail_times", 0)):
        raise RetryableJobError(f"run {runs}: the service is away")
    progress(1.0, "done")
    return {"runs": runs}


@job_kind("selftest.sleepy", timeout_s=1)
def sleepy(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Outlives its time limit of 1 s."""
    time.sleep(float(params.get("seconds", 30)))
    return {}


def spooled_input(spool_dir: Path, name: str) -> Path:
    """A spool folder as an upload leaves it, for selftest.spooled."""
    folder = spool_dir / name
    folder.mkdir(parents=True)
    (folder / "input").write_bytes(b"label map")
    return folder


@job_kind("selftest.spooled", timeout_s=60, cleanup=remove_spool)
def spooled(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Like an upload's job: reads `input` in its spool folder (removed by the runner once the job has
    ended) after `delay_s`; fails retryably on its first `fail_times` runs (counted in `counter`), and
    for good when `fail` is set."""
    for step in range(int(float(params.get("delay_s", 0)) * 10)):
        time.sleep(0.1)
        progress(step / 1000, "waiting")
    data = (Path(params["spool"]) / "input").read_bytes()
    if params.get("counter"):
        counter = Path(params["counter"])
        runs = int(counter.read_text() or 0) + 1 if counter.exists() else 1
        counter.write_text(str(runs))
        if runs <= int(params.get("fail_times", 0)):
            raise RetryableJobError(f"run {runs}: the service is away")
    if params.get("fail"):
        raise ValueError("asked to fail")
    return {"bytes": len(data)}
