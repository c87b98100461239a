"""Applies finished jobs' room effects: a job's result may carry `room_ops` (e.g. "add version 2 of the
mandible to the scene"); they become ordinary room events by the system user.

Job workers cannot reach a room's actor (they run in other processes or on other machines), so the
jobs table is the hand-off: a job that succeeds with room ops is marked `effects_pending`, and every app
instance applies pending effects on a nudge (a local job finished) or every `job_effects_poll_s`. Each op
carries the op id `job:<job id>:<index>`, so when two instances apply the same effect the room stores
it once; a room that is not loaded anywhere is loaded for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from server.core.db import Database
from server.core.job_store import effects_applied, pending_effects
from server.rooms.hubs import Hubs
from server.rooms.protocol import OpRejected

log = logging.getLogger("trinity.jobs")
BATCH = 50


class JobEffects:
    def __init__(self, *, db: Database, hubs: Hubs, poll_s: float) -> None:
        self.db = db
        self.hubs = hubs
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def nudge(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            self._wake.clear()
            try:
                await self.apply_pending()
            except Exception:
                log.exception("applying job effects failed; retrying on the next poll")

    async def apply_pending(self) -> int:
        jobs = await self.db.run_read(self._pending)
        for job_id, room_id, ops in jobs:
            if room_id:
                await self._apply(job_id, room_id, ops)
            await self.db.run_write(self._done, job_id)
        return len(jobs)

    async def _apply(self, job_id: str, room_id: str, ops: list[dict[str, Any]]) -> None:
        hub = await self.hubs.get(room_id)
        for index, op in enumerate(ops):
            try:
                await hub.system_op(str(op["kind"]), dict(op.get("payload") or {}), op_id=f"job:{job_id}:{index}")
            except OpRejected as rejected:  # e.g. the room was archived meanwhile: nothing to show it in
                log.warning("job effect refused by the room", extra={"job_id": job_id, "reason": str(rejected)})

    def _pending(self) -> list[tuple[str, str | None, list[dict[str, Any]]]]:
        with self.db.session() as db:
            return pending_effects(db, BATCH)

    def _done(self, job_id: str) -> None:
        with self.db.session() as db:
            effects_applied(db, job_id)
