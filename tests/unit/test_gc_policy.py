"""The latency GC policy: survivors are frozen (not rescanned), and the full collection still frees
cycles among them."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from server.core import gc_policy


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def policy() -> Iterator[None]:
    gc_policy.install(gen0_threshold=2000, freeze_after=0)
    yield
    gc_policy.uninstall()


def make_cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_survivors_of_a_collection_are_frozen_and_the_full_collection_frees_their_cycles(policy: None) -> None:
    assert gc.get_threshold()[0] == 2000
    cycle = make_cycle()
    survivor = Node()
    gc.collect(0)  # the callback freezes what survived, the cycle included (it was still referenced)
    frozen = gc.get_freeze_count()
    assert frozen > 0 and cycle() is None  # unreferenced cycle: collected before the freeze

    kept = make_cycle()
    holder = [kept()]
    gc.collect(0)
    assert gc.get_freeze_count() > frozen  # the cycle (alive then) is now frozen
    holder.clear()
    gc.collect()
    assert kept() is not None  # garbage now, but frozen objects are not scanned
    pause = gc_policy.full_collection()
    assert kept() is None and pause >= 0
    assert survivor.other is None


def test_uninstall_restores_the_defaults() -> None:
    gc_policy.install(gen0_threshold=1234, freeze_after=1)
    assert gc.get_threshold()[0] == 1234 and gc.get_freeze_count() > 0
    gc_policy.uninstall()
    assert gc.get_threshold() == gc_policy.DEFAULT_THRESHOLDS and gc.get_freeze_count() == 0
    assert all(getattr(c, "__name__", "") != "_freeze_survivors" for c in gc.callbacks)
