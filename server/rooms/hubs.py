"""This instance's live rooms: loads a hub on first use, unloads it when nobody is connected."""

from __future__ import annotations

import asyncio
import contextlib

from server.core.bus import EventBus, ephemeral_message
from server.core.db import Database
from server.core.metrics import Metrics
from server.rooms import repository
from server.rooms.commands import MemberInfo
from server.rooms.connection import PendingWrites
from server.rooms.group_commit import GroupCommitWriter
from server.rooms.hub import RoomHub, dumps
from server.settings import Settings

UNLOAD_AFTER_S = 120.0


class Hubs:
    def __init__(self, *, db: Database, bus: EventBus, settings: Settings, metrics: Metrics) -> None:
        self.db = db
        self.bus = bus
        self.settings = settings
        self.metrics = metrics
        self.writer = GroupCommitWriter(db)
        self.writes = PendingWrites()  # frames written directly to sockets (rooms/connection.py)
        self.writer.after_commit = self.writes.flush  # a commit's frames leave before the loop moves on
        self._hubs: dict[str, RoomHub] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._unload_tasks: dict[str, asyncio.Task[None]] = {}

    async def publish(self, room_id: str, frame: dict[str, object]) -> None:
        """An ephemeral frame from the server to everyone in a room, on every instance (e.g. job progress)."""
        await self.bus.publish(room_id, ephemeral_message(self.bus.instance_id, dumps(frame)))

    def resync_all(self) -> None:
        """The bus was away: every loaded room catches up from the log."""
        for hub in self._hubs.values():
            hub.resync()

    def loaded(self, room_id: str) -> RoomHub | None:
        return self._hubs.get(room_id)

    async def get(self, room_id: str) -> RoomHub:
        hub = self._hubs.get(room_id)
        if hub is not None:
            self._cancel_unload(room_id)
            return hub
        lock = self._locks.setdefault(room_id, asyncio.Lock())
        async with lock:
            hub = self._hubs.get(room_id)
            if hub is None:
                room_info, members = await self.db.run_read(self._load_room, room_id)
                hub = RoomHub(
                    room_id,
                    db=self.db,
                    writer=self.writer,
                    bus=self.bus,
                    settings=self.settings,
                    metrics=self.metrics,
                    room_info=room_info,
                )
                await hub.load(members)
                self._hubs[room_id] = hub
                self.metrics.rooms_loaded.set(len(self._hubs))
        return hub

    def _load_room(self, room_id: str) -> tuple[dict[str, object], list[MemberInfo]]:
        with self.db.session() as db:
            room = repository.get_room(db, room_id)
            info: dict[str, object] = {
                "id": room.id,
                "kind": room.kind,
                "title": room.title,
                "case_id": room.case_id,
                "site": room.site_id,
            }
            rows = repository.members(db, room_id)
            members = [MemberInfo(m.user_id, m.display_name, m.site_id, m.role) for m in rows]
        return info, members

    def release(self, room_id: str) -> None:
        """Called when a connection ends; unload the hub after a quiet period."""
        hub = self._hubs.get(room_id)
        if hub is None or hub.connections or room_id in self._unload_tasks:
            return
        self._unload_tasks[room_id] = asyncio.get_running_loop().create_task(self._unload_later(room_id))

    async def _unload_later(self, room_id: str) -> None:
        await asyncio.sleep(UNLOAD_AFTER_S)
        self._unload_tasks.pop(room_id, None)
        hub = self._hubs.get(room_id)
        if hub is not None and not hub.connections and hub.idle():
            del self._hubs[room_id]
            await hub.close()
            self.metrics.rooms_loaded.set(len(self._hubs))

    async def evict(self, room_id: str, reason: str) -> None:
        """Unload a room now, dropping its connections (its stored history was erased): whoever comes
        back gets the room as stored, under its new epoch."""
        self._cancel_unload(room_id)
        hub = self._hubs.pop(room_id, None)
        if hub is None:
            return
        for conn in list(hub.connections.values()):
            conn.drop(4003, reason)
        await hub.close()
        self.metrics.rooms_loaded.set(len(self._hubs))

    def _cancel_unload(self, room_id: str) -> None:
        task = self._unload_tasks.pop(room_id, None)
        if task:
            task.cancel()

    async def close(self) -> None:
        for task in self._unload_tasks.values():
            task.cancel()
        for hub in list(self._hubs.values()):
            for conn in list(hub.connections.values()):
                conn.drop(4011, "server shutting down")
            with contextlib.suppress(Exception):
                await hub.close()
        self._hubs.clear()
        await self.writer.close()
