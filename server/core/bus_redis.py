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
from server.core.redis_pipe import RedisPipe

log = logging.getLogger("trinity.bus")
STREAM_MAXLEN = 10_000
BLOCK_MS = 1000


# Leadership of a room (rooms/forwarding.py): a key holding the leader's instance id, with a TTL the
# leader keeps renewing. Claiming and releasing are scripts, so a renewal never extends someone else's.
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
if current == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return current
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def stream_key(room_id: str) -> str:
    return f"trinity:room:{room_id}:bus"


def leader_key(room_id: str) -> str:
    return f"trinity:room:{room_id}:leader"


def encode(message: dict[str, Any]) -> dict[Any, Any]:
    """Stream fields: origin and kind apart, so a reader skips its own messages without decoding any
    JSON, and the frame as it is (not escaped inside another JSON document)."""
    fields: dict[Any, Any] = {"o": message.get("origin", ""), "k": message["kind"]}
    if "frame" in message:
        fields["f"] = message["frame"]
    rest = {k: v for k, v in message.items() if k not in ("origin", "kind", "frame")}
    if rest:
        fields["m"] = orjson.dumps(rest)
    return fields


def _flat(fields: dict[Any, Any]) -> list[Any]:
    return [item for pair in fields.items() for item in pair]


def decode(fields: dict[bytes, bytes]) -> dict[str, Any]:
    if b"k" not in fields:  # written by a version before the split fields
        return dict(orjson.loads(fields[b"m"]))
    message: dict[str, Any] = orjson.loads(fields[b"m"]) if b"m" in fields else {}
    message["origin"] = fields[b"o"].decode()
    message["kind"] = fields[b"k"].decode()
    if b"f" in fields:
        message["frame"] = fields[b"f"].decode()
    return message


class RedisBus:
    shared = True

    def __init__(self, url: str, instance_id: str) -> None:
        self.instance_id = instance_id
        self._origin = instance_id.encode()
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
        self._outbox_scheduled = False
        # The outbox's writes and the reader's XREADs: the hot paths (core/redis_pipe.py says why).
        self._pipe = RedisPipe(url)
        self._read_pipe = RedisPipe(url, timeout_s=BLOCK_MS / 1000 + 3)
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
        self._pipe.close()
        self._read_pipe.close()
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
            await self._redis.xadd(stream_key(room_id), encode(message), maxlen=STREAM_MAXLEN, approximate=True)
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
        if not self._outbox_scheduled and (self._outbox_task is None or self._outbox_task.done()):
            # Nothing in flight: write once the loop's current pass is done, so what this pass
            # publishes (a commit's events, a read's pointer frames) goes in one pipelined write.
            self._outbox_scheduled = True
            asyncio.get_running_loop().call_soon(self._start_outbox)

    def _start_outbox(self) -> None:
        self._outbox_scheduled = False
        if not self._outbox or (self._outbox_task is not None and not self._outbox_task.done()):
            return
        sent = 0
        if self._pipe.connected:  # write now, collect the replies in the task
            sent = len(self._outbox)
            self._pipe.send(self._xadds())
        self._outbox_task = asyncio.get_running_loop().create_task(self._flush_outbox(sent))

    def _xadds(self) -> list[tuple[Any, ...]]:
        batch, self._outbox = self._outbox, []
        return [
            ("XADD", stream_key(room_id), "MAXLEN", "~", STREAM_MAXLEN, "*", *_flat(encode(message)))
            for room_id, message in batch
        ]

    async def _flush_outbox(self, sent: int = 0) -> None:
        """Collect the replies of what was sent, then write what was published meanwhile in one
        pipelined round trip, until nothing is left."""
        while sent or self._outbox:
            try:
                if sent:
                    await self._pipe.receive(sent)
                    sent = 0
                if self._outbox:
                    await self._pipe.execute(self._xadds())
                self._ready = True
            except RedisError as exc:
                if self._ready:
                    # Events are stored: other instances catch up from the database (a gap, or a resync
                    # once the bus is back). Ephemeral frames are lost, as they may be.
                    log.warning("Redis publish failed; other instances catch up from the database: %s", exc)
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

    async def claim_leadership(self, room_id: str, ttl_s: float) -> str | None:
        if not self._redis:
            return None
        try:
            leader = await self._redis.eval(_CLAIM, 1, leader_key(room_id), self.instance_id, int(ttl_s * 1000))
        except RedisError:
            return None
        return leader.decode() if isinstance(leader, bytes) else str(leader)

    async def release_leadership(self, room_id: str) -> None:
        if self._redis:
            with contextlib.suppress(RedisError):
                await self._redis.eval(_RELEASE, 1, leader_key(room_id), self.instance_id)

    async def subscribe(self, room_id: str, handler: BusHandler) -> None:
        new = room_id not in self._handlers
        self._handlers[room_id].append(handler)
        if not new:
            return
        # Only what is published from now on (history is in the database), from the stream's tail as of
        # this call: resolved here, not later by the reader, so nothing published once this returns is
        # missed (a forwarded op has no sequence number that would reveal the gap).
        self._last_ids[room_id] = "$"
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                tail = await self._tail_id(self._redis, room_id)
                if self._last_ids.get(room_id) == "$":
                    self._last_ids[room_id] = tail
        self._changed.set()

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
                self._last_ids[room_id] = await self._tail_id(self._reader_redis, room_id)

    @staticmethod
    async def _tail_id(client: aioredis.Redis, room_id: str) -> str:
        if not await client.exists(stream_key(room_id)):
            return "0-0"
        info = await client.xinfo_stream(stream_key(room_id))
        return str(info["last-generated-id"].decode())

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
                keys = [stream_key(room) for room in self._last_ids]
                command = ("XREAD", "COUNT", 500, "BLOCK", BLOCK_MS, "STREAMS", *keys, *self._last_ids.values())
                (replies,) = await self._read_pipe.execute([command])  # [[key, [[id, [field, value, ...]]]]]
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
                for entry_id, flat in entries:
                    fields = dict(zip(flat[::2], flat[1::2], strict=True))
                    if room_id in self._last_ids:
                        self._last_ids[room_id] = entry_id.decode()
                    if fields.get(b"o") == self._origin:
                        continue  # delivered locally when published
                    message = decode(fields)
                    for handler in list(self._handlers.get(room_id, ())):
                        try:
                            handler(message)
                        except Exception:
                            log.exception("bus handler failed", extra={"room_id": room_id})
