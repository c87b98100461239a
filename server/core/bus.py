"""The event bus: carries a room's messages to every instance that has members of that room.

`InMemoryBus` is the embedded implementation (one process); the Redis implementation of the
scale-out issue sits behind the same Protocol. Messages are dicts:
  {"origin": instance id, "kind": "event" | "ephemeral" | "op" | "reply" | "leader", "frame": JSON text, ...}
Sequenced events also carry "seq" so a receiver can detect gaps and catch up from the log. "op",
"reply" and "leader" carry a room's ops to the instance that leads it (rooms/forwarding.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol

BusHandler = Callable[[dict[str, Any]], None]


def ephemeral_message(origin: str, frame: str, *, user: str | None = None, key: Any = None) -> dict[str, Any]:
    """A frame for a room's clients that is not stored: to all but `user`, only the latest per `key`."""
    return {"origin": origin, "kind": "ephemeral", "frame": frame, "user": user, "key": key}


class EventBus(Protocol):
    instance_id: str
    shared: bool  # other instances publish into the same rooms

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, room_id: str, message: dict[str, Any]) -> None: ...

    def publish_nowait(self, room_id: str, message: dict[str, Any]) -> None:
        """Deliver to this instance's subscribers now and to the others soon, without waiting: for
        ephemeral frames (pointers, presence), where a task per frame would cost more than the frame."""
        ...

    async def subscribe(self, room_id: str, handler: BusHandler) -> None:
        """Deliver the room's messages published from now on to `handler`."""
        ...

    def unsubscribe(self, room_id: str, handler: BusHandler) -> None: ...

    def is_ready(self) -> bool: ...

    async def share_presence(self, room_id: str, local: dict[str, Any], ttl_s: float) -> dict[str, Any] | None:
        """Publish this instance's online users of a room (valid for ttl_s) and return those of the
        other live instances (None when unknown, e.g. the broker is away)."""
        ...

    async def claim_leadership(self, room_id: str, ttl_s: float) -> str | None:
        """Become (or stay, renewing for ttl_s) the instance that decides a room's ops, unless another
        live instance is; returns the leader's instance id (None when unknown: the broker is away)."""
        ...

    async def release_leadership(self, room_id: str) -> None: ...


class InMemoryBus:
    """Delivers synchronously, in publish order, to this process's subscribers."""

    shared = False

    def __init__(self, instance_id: str = "local") -> None:
        self.instance_id = instance_id
        self._handlers: dict[str, list[BusHandler]] = defaultdict(list)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._handlers.clear()

    async def publish(self, room_id: str, message: dict[str, Any]) -> None:
        for handler in list(self._handlers.get(room_id, ())):
            handler(message)

    def publish_nowait(self, room_id: str, message: dict[str, Any]) -> None:
        for handler in list(self._handlers.get(room_id, ())):
            handler(message)

    async def subscribe(self, room_id: str, handler: BusHandler) -> None:
        self._handlers[room_id].append(handler)

    def unsubscribe(self, room_id: str, handler: BusHandler) -> None:
        handlers = self._handlers.get(room_id)
        if handlers and handler in handlers:
            handlers.remove(handler)
            if not handlers:
                del self._handlers[room_id]

    def is_ready(self) -> bool:
        return True

    async def share_presence(self, room_id: str, local: dict[str, Any], ttl_s: float) -> dict[str, Any] | None:
        return {}  # one process: nobody else

    async def claim_leadership(self, room_id: str, ttl_s: float) -> str | None:
        return self.instance_id

    async def release_leadership(self, room_id: str) -> None:
        return None
