"""Frame helpers shared by the room modules: one JSON encoding, user colors."""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import orjson

PALETTE = (
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#bfef45",
    "#fabed4",
    "#469990",
    "#dcbeff",
    "#9a6324",
)


@functools.lru_cache(maxsize=4096)
def user_color(user_id: str) -> str:
    return PALETTE[int(hashlib.sha1(user_id.encode()).hexdigest(), 16) % len(PALETTE)]


def dumps(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame).decode()
