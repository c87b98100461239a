"""uvicorn's sans-I/O WebSocket protocol plus a direct path for the room socket's hot loop.

ASGI hands every frame through an asyncio.Queue one way and an awaited `send` the other. Under room
load that costs a task wake-up per frame each way, and uvicorn pauses reading after every frame
until the app has taken it (two more system calls). This protocol advertises an ASGI extension,
`scope["extensions"]["trinity.direct"]`, with synchronous calls:

- `can_send() -> bool`: a frame can be written now: the WebSocket is open (no close frame sent or
  received, the transport not closing) and the socket's buffer is under the high-water mark.
  Otherwise the caller falls back to ASGI `send`, which waits for the buffer to drain.
- `send(text)`: write a text frame now (only after `can_send()`).
- `receive_with(callback)`: from now on, text frames go to `callback(text)` as they are parsed, in
  the read callback, once the app has taken everything already queued (order is kept). Anything
  else (binary frames, disconnects) still arrives through ASGI `receive`.

The app works unchanged without it (tests' ASGI clients, another server): it checks for the
extension and otherwise uses plain ASGI.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame
from websockets.protocol import State

EXTENSION = "trinity.direct"
log = logging.getLogger("trinity.ws")


class DirectWebSocketProtocol(WebSocketsSansIOProtocol):
    _receiver: Callable[[str], None] | None = None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None and not self.close_sent:
            scope["extensions"][EXTENSION] = {
                "can_send": self.can_send,
                "send": self.send_now,
                "receive_with": self.receive_with,
            }

    def can_send(self) -> bool:
        return (
            self.handshake_complete
            and not (self.disconnected or self.close_sent)
            and self.writable.is_set()
            and self.conn.state is State.OPEN  # not after the peer's close frame
            and not self.transport.is_closing()
        )

    def send_now(self, text: str) -> None:
        payload = text.encode()
        if self.conn.extensions:  # permessage-deflate: websockets compresses and frames it
            self.conn.send_text(payload)
            self.transport.write(b"".join(self.conn.data_to_send()))
            return
        self.transport.write(text_frame(payload))

    def receive_with(self, callback: Callable[[str], None] | None) -> None:
        self._receiver = callback

    def handle_text(self, event: Frame) -> None:
        receiver = self._receiver
        if receiver is None or not event.fin or self.close_sent or not self.queue.empty():
            super().handle_text(event)
            return
        try:
            text = bytes(event.data).decode()
        except UnicodeDecodeError:
            super().handle_text(event)  # uvicorn closes with 1007
            return
        try:
            receiver(text)
        except Exception:
            # The receiver answers bad input itself; anything escaping is a bug: close this socket only.
            log.exception("room socket receiver failed")
            self._receiver = None
            self.transport.close()


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked text frame (RFC 6455 §5.2). Framed here: websockets' general
    framing cost more Python than the rest of a direct write."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload
