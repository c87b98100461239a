"""Garbage collection tuned for latency: the one place that configures Python's cycle collector.

A collection stops the event loop for as long as it takes to scan the objects it covers, and a room
under load grows its state (annotations, the op index) by thousands of objects a second; left to the
defaults, full collections rescan all of them every few seconds and pause every room for 50-300 ms.
So objects that have survived a collection of generation `freeze_after` or older are moved to the
permanent generation (gc.freeze) and not scanned again: a pause then covers only what is new since
the last one. The price is that a cycle among frozen objects that becomes garbage is only reclaimed
by the periodic full collection (every `full_interval_s`), one longer pause at a known rate.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

log = logging.getLogger("trinity.gc")
_freeze_after = 1
DEFAULT_THRESHOLDS = gc.get_threshold()


def install(gen0_threshold: int, freeze_after: int | None) -> None:
    """Start-up objects are frozen; later survivors of a generation >= freeze_after collection too
    (None: only the start-up objects)."""
    global _freeze_after
    gc.collect()
    gc.freeze()
    gc.set_threshold(gen0_threshold, 10, 10)
    if _freeze_survivors in gc.callbacks:
        gc.callbacks.remove(_freeze_survivors)  # once per process, however many apps are built (tests)
    if freeze_after is not None:
        _freeze_after = freeze_after
        gc.callbacks.append(_freeze_survivors)


def uninstall() -> None:
    """Back to the collector's defaults, frozen objects scannable again (an app shutting down)."""
    if _freeze_survivors in gc.callbacks:
        gc.callbacks.remove(_freeze_survivors)
    gc.unfreeze()
    gc.set_threshold(*DEFAULT_THRESHOLDS)


def _freeze_survivors(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info["generation"] >= _freeze_after:
        gc.freeze()


def full_collection() -> float:
    """Everything, frozen or not, scanned once; returns the pause in seconds."""
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return time.perf_counter() - started


async def run_full_collections(interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        pause = full_collection()
        log.info("full garbage collection", extra={"pause_ms": round(pause * 1000, 1)})
