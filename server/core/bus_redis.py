"""The Redis event bus: one Redis Stream per room, read only by the instances with members in it.

A message published here is delivered to this instance's own subscribers at once (no round trip) and
appended to the room's stream for the other instances. Each instance runs one reader that blocks on
XREAD over exactly the streams of the rooms it has loaded, so no instance decodes traffic of rooms it
does not serve (unlike one global channel). Streams keep a bounded tail (MAXLEN ~), which covers a
reader that was briefly away; anything older is in the database, and the hubs catch up from there
whenever they see a gap in sequence numbers or the bus reconnects.

Redis down: publishing only reaches local subscribers, the bus reports not ready, and the reader keeps
retrying; when Redis is back every subscriber is told to resync from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from server.core.bus import BusHandler

log = logging.getLogger("trinity.bus")
STREAM_MAXLEN = 10_000
BLOCK_MS = 1000


def stream_key(room_id: str) -> str:
    return f"trinity:room:{room_id}:bus"


class RedisBus:
    shared = True

    def __init__(self, url: str, instance_id: str) -> None:
        self.instance_id = instance_id
        self._url = url
        self._redis: aioredis.Redis | None = None
        self._reader_redis: aioredis.Redis | None = None
        self._handlers: dict[str, list[BusHandler]] = defaultdict(list)
        self._last_ids: dict[str, str] = {}
        self._ready = False
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._outbox: list[tuple[str, dict[str, Any]]] = []  # publish_nowait's, written by one task
        self._outbox_task: asyncio.Task[None] | None = None
        self.on_reconnect: list[Callable[[], None]] = []

    async def start(self) -> None:
        self._redis = aioredis.from_url(self._url, socket_timeout=2, socket_connect_timeout=2)
        self._reader_redis = aioredis.from_url(self._url, socket_timeout=BLOCK_MS / 1000 + 3, socket_connect_timeout=2)
        try:
            await self._redis.ping()
            self._ready = True
        except RedisError as exc:
            log.warning("Redis not reachable at start-up; serving local clients only: %s", exc)
        self._reader = asyncio.create_task(self._read_loop(), name="redis-bus-reader")

    async def close(self) -> None:
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for client in (self._redis, self._reader_redis):
            if client is not None:
                await client.aclose()
        self._handlers.clear()

    def is_ready(self) -> bool:
        return self._ready

    @property
    def redis(self) -> aioredis.Redis:
        assert self._redis is not None, "start() the bus first"
        return self._redis

    async def publish(self, room_id: str, message: dict[str, Any]) -> None:
        for handler in list(self._handlers.get(room_id, ())):
            handler(message)
        if not self._redis:
            return
        try:
            await self._redis.xadd(
                stream_key(room_id), {"m": orjson.dumps(message)}, maxlen=STREAM_MAXLEN, approximate=True
            )
            self._ready = True
        except RedisError as exc:
            if self._ready:
                log.warning("Redis publish failed; other instances will catch up from the database: %s", exc)
            self._ready = False

    async def publish_many(self, room_id: str, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            for handler in list(self._handlers.get(room_id, ())):
                handler(message)
        if not self._redis or not messages:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for message in messages:
                    fields: dict[Any, Any] = {"m": orjson.dumps(message)}
                    pipe.xadd(stream_key(room_id), fields, maxlen=STREAM_MAXLEN, approximate=True)
                await pipe.execute()
            self._ready = True
        except RedisError as exc:
            if self._ready:
                log.warning("Redis publish failed; other instances will catch up from the database: %s", exc)
            self._ready = False

    def publish_nowait(self, room_id: str, message: dict[str, Any]) -> None:
        for handler in list(self._handlers.get(room_id, ())):
            handler(message)
        if not self._redis:
            return
        self._outbox.append((room_id, message))
        if self._outbox_task is None or self._outbox_task.done():
            self._outbox_task = asyncio.get_running_loop().create_task(self._flush_outbox())

    async def _flush_outbox(self) -> None:
        """Everything published without waiting since the last flush, in one pipelined round trip."""
        while self._outbox:
            batch, self._outbox = self._outbox, []
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for room_id, message in batch:
                        fields: dict[Any, Any] = {"m": orjson.dumps(message)}
                        pipe.xadd(stream_key(room_id), fields, maxlen=STREAM_MAXLEN, approximate=True)
                    await pipe.execute()
                self._ready = True
            except RedisError as exc:
                if self._ready:
                    log.warning("Redis publish failed; ephemeral frames for other instances dropped: %s", exc)
                self._ready = False
                return

    async def share_presence(self, room_id: str, local: dict[str, Any], ttl_s: float) -> dict[str, Any] | None:
        """One hash per room, a field per instance holding its users and an expiry time: an instance
        that dies stops refreshing its field and its users drop out of everyone's view within ttl_s."""
        if not self._redis:
            return None
        key = f"trinity:presence:{room_id}"
        now = time.time()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                if local:
                    pipe.hset(key, self.instance_id, orjson.dumps({"users": local, "expires": now + ttl_s}))
                else:
                    pipe.hdel(key, self.instance_id)
                pipe.expire(key, int(ttl_s * 3) + 1)
                pipe.hgetall(key)
                *_, entries = await pipe.execute()
        except RedisError:
            return None
        remote: dict[str, Any] = {}
        stale = []
        for instance, raw in entries.items():
            if instance.decode() == self.instance_id:
                continue
            value = orjson.loads(raw)
            if value["expires"] < now:
                stale.append(instance)
            else:
                remote.update(value["users"])
        if stale:
            with contextlib.suppress(RedisError):
                await self._redis.hdel(key, *stale)
        return remote

    def subscribe(self, room_id: str, handler: BusHandler) -> None:
        if room_id not in self._handlers:
            self._last_ids[room_id] = "$"  # only what is published from now on; history is in the database
            self._changed.set()
        self._handlers[room_id].append(handler)

    def unsubscribe(self, room_id: str, handler: BusHandler) -> None:
        handlers = self._handlers.get(room_id)
        if handlers and handler in handlers:
            handlers.remove(handler)
            if not handlers:
                del self._handlers[room_id]
                self._last_ids.pop(room_id, None)
                self._changed.set()

    async def _resolve_tail_ids(self) -> None:
        """Replace '$' by the stream's current last id, so a later XREAD misses nothing in between."""
        assert self._reader_redis is not None
        for room_id, last in list(self._last_ids.items()):
            if last == "$":
                info = (
                    await self._reader_redis.xinfo_stream(stream_key(room_id))
                    if await self._reader_redis.exists(stream_key(room_id))
                    else None
                )
                self._last_ids[room_id] = info["last-generated-id"].decode() if info else "0-0"

    async def _read_loop(self) -> None:
        assert self._reader_redis is not None
        backoff = 0.1
        was_down = not self._ready
        while True:
            if not self._last_ids:
                self._changed.clear()
                await self._changed.wait()
                continue
            try:
                await self._resolve_tail_ids()
                if was_down:
                    was_down = False
                    self._ready = True
                    for callback in list(self.on_reconnect):
                        callback()
                streams = {stream_key(r): i for r, i in self._last_ids.items()}
                replies: Any = await self._reader_redis.xread(streams, block=BLOCK_MS, count=500)  # type: ignore[arg-type]
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if not was_down:
                    log.warning("Redis bus reader lost Redis; retrying: %s", exc)
                was_down = True
                self._ready = False
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)
                continue
            for key, entries in replies or []:
                room_id = key.decode().split(":")[2]
                for entry_id, fields in entries:
                    if room_id in self._last_ids:
                        self._last_ids[room_id] = entry_id.decode()
                    message = orjson.loads(fields[b"m"])
                    if message.get("origin") == self.instance_id:
                        continue  # delivered locally when published
                    for handler in list(self._handlers.get(room_id, ())):
                        try:
                            handler(message)
                        except Exception:
                            log.exception("bus handler failed", extra={"room_id": room_id})
