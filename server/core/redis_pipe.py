"""Pipelined Redis writes for the event bus's outbox, on a connection of its own.

redis-py spends 60-130 us of Python per command (pool, retry and lock bookkeeping around each one);
at thousands of bus messages a second that was a third of a core. Here a batch of commands is packed by
hiredis (C), written at once, and the replies are read by hiredis' parser: a few microseconds each.
Only for plain writes whose replies are checked for errors; everything else stays on redis-py.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Coroutine
from typing import Any

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

READ_CHUNK = 64 * 1024


class RedisPipe:
    def __init__(self, url: str, *, timeout_s: float = 2.0) -> None:
        options = parse_url(url)
        self._host = str(options.get("host") or "127.0.0.1")
        self._port = int(options.get("port") or 6379)
        self._db = int(options.get("db") or 0)
        self._username = options.get("username")
        self._password = options.get("password")
        self._tls = options.get("connection_class") is SSLConnection
        self._timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    def send(self, commands: list[tuple[Any, ...]]) -> None:
        """Write now, without waiting (the caller then awaits `receive(len(commands))`); only while
        `connected`. Saves the publisher a trip around the event loop before its bytes leave."""
        assert self._writer is not None, "send() needs a connection"
        self._writer.write(b"".join(hiredis.pack_command(command) for command in commands))

    async def receive(self, count: int) -> list[Any]:
        """The replies of `count` commands already sent; raises like `execute`."""
        return await self._guarded(self._replies(count))

    async def execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send every command, then read as many replies; a connection problem or an error reply raises
        (redis-py's exception types, so callers handle both paths alike)."""
        if not commands:
            return []
        return await self._guarded(self._roundtrip(commands))

    async def _guarded(self, exchange: Coroutine[Any, Any, list[Any]]) -> list[Any]:
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that arrives as
            # the reply does, and the bus reader, cancelled at shutdown, then blocked for good.
            async with asyncio.timeout(self._timeout_s):
                return await exchange
        except ResponseError:
            raise  # every reply was read: the connection is still in step
        except (OSError, EOFError, TimeoutError) as exc:
            self.close()
            raise RedisConnectionError(f"Redis pipe: {exc!r}") from exc
        except BaseException:
            self.close()  # cancelled mid-exchange: replies may still be on their way
            raise

    async def _roundtrip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        if not self.connected:
            await self._connect()
        self.send(commands)
        return await self._replies(len(commands))

    async def _replies(self, count: int) -> list[Any]:
        assert self._reader is not None
        replies = await self._read(self._reader, count)
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise ResponseError(str(reply))
        return replies

    async def _read(self, stream: asyncio.StreamReader, count: int) -> list[Any]:
        parser = self._parser
        replies: list[Any] = []
        while len(replies) < count:
            reply = parser.gets()
            if reply is False:
                data = await stream.read(READ_CHUNK)
                if not data:
                    raise EOFError("Redis closed the connection")
                parser.feed(data)
                continue
            replies.append(reply)
        return replies

    async def _connect(self) -> None:
        context = ssl.create_default_context() if self._tls else None
        self._reader, self._writer = await asyncio.open_connection(self._host, self._port, ssl=context)
        self._parser = hiredis.Reader()
        setup: list[tuple[Any, ...]] = []
        if self._password is not None:
            setup.append(("AUTH", self._username, self._password) if self._username else ("AUTH", self._password))
        if self._db:
            setup.append(("SELECT", self._db))
        if setup:
            self._writer.write(b"".join(hiredis.pack_command(command) for command in setup))
            for reply in await self._read(self._reader, len(setup)):
                if isinstance(reply, hiredis.ReplyError):
                    self.close()
                    raise ResponseError(str(reply))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
