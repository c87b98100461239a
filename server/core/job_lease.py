"""A job's lease: at most one run of a job at a time, across workers (see server/core/jobs_celery.py)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

import redis
from redis.exceptions import RedisError

log = logging.getLogger("trinity.jobs")

_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_TAKE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3]) end "
    "return false"
)


class Superseded(Exception):
    """Raised into a job function whose run lost its lease to another run of the same job."""


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


class JobLease:
    """At most one run of a job at a time: a Redis key that a thread renews while the run lives.

    The value names the holder (host, pid): a lease whose holder was a process of this host that no
    longer exists (a pool process killed mid-job) is taken at once instead of waiting for its expiry.
    """

    def __init__(self, client: redis.Redis, job_id: str, lease_s: float) -> None:
        self.client = client
        self.job_id = job_id
        self.key = f"trinity:job:{job_id}:lease"
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self.ttl_ms = max(300, int(lease_s * 1000))
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        if not self.client.set(self.key, self.token, nx=True, px=self.ttl_ms) and not self._take_from_dead():
            return False
        self._thread = threading.Thread(target=self._renew, name="job-lease", daemon=True)
        self._thread.start()
        return True

    def _take_from_dead(self) -> bool:
        holder = self.client.get(self.key)
        if holder is None:
            return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))
        held_by = holder.decode() if isinstance(holder, bytes) else str(holder)
        host, pid, _ = held_by.split(":", 2)
        if host != socket.gethostname() or int(pid) == os.getpid() or not _process_gone(int(pid)):
            return False
        log.info("taking over the lease of a dead run: %s", held_by, extra={"job": self.job_id})
        return bool(self.client.eval(_TAKE, 1, self.key, holder, self.token, self.ttl_ms))

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                if self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms):
                    continue
                # Expired (Redis away, or this process stalled): take it back unless another run has.
                if not self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
                    self.lost.set()
                    return
            except RedisError as exc:
                log.warning("could not renew a job lease: %s", exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            try:
                self.client.eval(_RELEASE, 1, self.key, self.token)
            except RedisError as exc:  # it expires by itself
                log.warning("could not release a job lease: %s", exc)
