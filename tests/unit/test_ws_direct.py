"""The direct path's own framing is byte for byte what websockets writes for a server text frame."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from server.core.ws_direct import text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 200_000])
def test_text_frames_match_websockets(size: int) -> None:
    payload = ("é" * size).encode()[:size]
    assert text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False)
