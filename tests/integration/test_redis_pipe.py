"""The bus outbox's pipelined writer (core/redis_pipe.py) against the real Redis."""

from __future__ import annotations

import socket
import uuid

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from server.core.redis_pipe import RedisPipe
from tests.support.services import REDIS_URL, require_redis


async def test_a_batch_is_written_in_order_and_errors_are_typed() -> None:
    require_redis()
    key = f"test:pipe:{uuid.uuid4().hex}"
    other_db = REDIS_URL.rsplit("/", 1)[0] + "/3"
    pipe = RedisPipe(other_db)
    client = redis.Redis.from_url(other_db)
    try:
        ids = await pipe.execute([("XADD", key, "MAXLEN", "~", 100, "*", "n", i, "b", b"\xff\x00") for i in range(50)])
        assert len(ids) == 50 and ids == sorted(ids, key=lambda i: tuple(map(int, i.split(b"-"))))
        entries = client.xrange(key)
        assert [int(fields[b"n"]) for _, fields in entries] == list(range(50))
        assert entries[0][1][b"b"] == b"\xff\x00"  # bytes go through untouched
        assert not redis.Redis.from_url(REDIS_URL).exists(key)  # the URL's database was selected
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await pipe.execute([("XADD", key, "*", "n", 50), ("LPUSH", key, "x")])
        # The connection is still in step after an error reply.
        assert await pipe.execute([("XLEN", key), ("PING",)]) == [51, b"PONG"]
    finally:
        client.delete(key)
        pipe.close()


async def test_an_unreachable_redis_raises_a_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pipe = RedisPipe(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(RedisConnectionError):
        await pipe.execute([("PING",)])
