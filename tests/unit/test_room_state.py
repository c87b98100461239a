"""The pure room state machine, without any network, database or framework."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from server.rooms.protocol import ErrorCode, OpRejected
from server.rooms.state import Actor, Limits, RoomState, decide, evolve, replay

ALICE = Actor("alice", "participant")
BOB = Actor("bob", "participant")
OWNER = Actor("olga", "owner")
WATCHER = Actor("wendy", "observer")
MEMBERS = {"alice": "participant", "bob": "participant", "olga": "owner", "wendy": "observer"}


def apply(
    state: RoomState, actor: Actor, kind: str, payload: dict[str, Any] | None = None, op_id: str | None = None
) -> dict[str, Any]:
    decision = decide(state, actor, kind, payload or {}, members=MEMBERS)  # type: ignore[arg-type]
    event = {
        "seq": state.seq + 1,
        "kind": decision.kind,
        "user": actor.user_id,
        "op_id": op_id,
        "ts": 0,
        "data": decision.data,
    }
    evolve(state, event)
    return event


def rejected(state: RoomState, actor: Actor, kind: str, payload: dict[str, Any] | None = None) -> ErrorCode:
    with pytest.raises(OpRejected) as info:
        decide(state, actor, kind, payload or {}, members=MEMBERS)  # type: ignore[arg-type]
    return info.value.code


def marker(annotation_id: str, x: float = 0.0) -> dict[str, Any]:
    return {"id": annotation_id, "kind": "marker", "data": {"point": [x, 0, 0]}}


def test_distance_angle_and_trajectory_values_are_computed_by_the_server() -> None:
    state = RoomState()
    d = apply(
        state,
        ALICE,
        "annotation.create",
        {"id": "d", "kind": "distance", "data": {"a": [1, 2, 3], "b": [4, 6, 3], "value_mm": 999}},
    )
    assert d["data"]["annotation"]["data"]["value_mm"] == 5.0
    a = apply(
        state,
        ALICE,
        "annotation.create",
        {"id": "a", "kind": "angle", "data": {"a": [1, 0, 0], "vertex": [0, 0, 0], "b": [0, 1, 0]}},
    )
    assert a["data"]["annotation"]["data"]["value_deg"] == pytest.approx(90.0)
    t = apply(
        state,
        ALICE,
        "annotation.create",
        {"id": "t", "kind": "trajectory", "data": {"entry": [0, 0, 0], "target": [0, 0, 12], "diameter_mm": 2.5}},
    )
    assert t["data"]["annotation"]["data"]["length_mm"] == 12.0
    p = apply(
        state,
        ALICE,
        "annotation.create",
        {"id": "p", "kind": "plane", "data": {"point": [0, 0, 0], "normal": [0, 0, 5]}},
    )
    assert p["data"]["annotation"]["data"]["normal"] == [0.0, 0.0, 1.0]
    assert state.seq == 4 and len(state.snapshot()["annotations"]) == 4


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "marker", "data": {"point": [0, 0]}},
        {"kind": "marker", "data": {"point": [0, math.nan, 0]}},
        {"kind": "distance", "data": {"a": [0, 0, 0]}},
        {"kind": "plane", "data": {"point": [0, 0, 0], "normal": [0, 0, 0]}},
        {"kind": "trajectory", "data": {"entry": [0, 0, 0], "target": [1, 0, 0], "diameter_mm": -1}},
        {"kind": "angle", "data": {"a": [0, 0, 0], "vertex": [0, 0, 0], "b": [1, 0, 0]}},
        {"kind": "hologram", "data": {}},
        {"kind": "note", "data": {"text": ""}},
    ],
)
def test_malformed_annotations_are_rejected_and_change_nothing(data: dict[str, Any]) -> None:
    state = RoomState()
    assert rejected(state, ALICE, "annotation.create", {"id": "x", **data}) == ErrorCode.INVALID_OP
    assert state.seq == 0 and not state.annotations


def test_oversized_annotation_is_rejected() -> None:
    state = RoomState()
    with pytest.raises(OpRejected) as info:
        decide(
            state,
            ALICE,
            "annotation.create",
            {"id": "n", "kind": "note", "data": {"text": "x" * 3000}},
            limits=Limits(annotation_max_bytes=1000),
        )
    assert info.value.code == ErrorCode.TOO_LARGE


def test_stale_update_is_rejected_with_the_current_version() -> None:
    state = RoomState()
    apply(state, ALICE, "annotation.create", marker("m"))
    apply(state, BOB, "annotation.update", {"id": "m", "base_version": 1, "label": "bob's"})
    with pytest.raises(OpRejected) as info:
        decide(state, ALICE, "annotation.update", {"id": "m", "base_version": 1, "label": "alice's"})
    assert info.value.code == ErrorCode.STALE_VERSION
    assert info.value.details["current"]["version"] == 2
    assert info.value.details["current"]["label"] == "bob's"


def test_decide_never_mutates_state() -> None:
    state = RoomState()
    apply(state, ALICE, "annotation.create", marker("m"))
    before = repr(state)
    decide(state, ALICE, "annotation.update", {"id": "m", "base_version": 1, "data": {"point": [5, 5, 5]}})
    decide(state, ALICE, "annotation.delete", {"id": "m", "base_version": 1})
    decide(state, ALICE, "undo", {})
    assert repr(state) == before


def test_undo_and_redo_are_per_user() -> None:
    state = RoomState()
    apply(state, ALICE, "annotation.create", marker("a1"))
    apply(state, BOB, "annotation.create", marker("b1"))
    apply(state, ALICE, "annotation.update", {"id": "a1", "base_version": 1, "data": {"point": [9, 9, 9]}})
    apply(state, ALICE, "undo")
    assert state.annotations["a1"]["data"]["point"] == [0.0, 0.0, 0.0]
    assert state.annotations["b1"]["version"] == 1  # Bob's work untouched
    apply(state, ALICE, "undo")
    assert state.annotations["a1"]["deleted"]
    assert rejected(state, ALICE, "undo") == ErrorCode.NOTHING_TO_UNDO
    apply(state, ALICE, "redo")
    assert not state.annotations["a1"].get("deleted") and state.annotations["a1"]["data"]["point"] == [0.0, 0.0, 0.0]
    apply(state, ALICE, "redo")
    assert state.annotations["a1"]["data"]["point"] == [9.0, 9.0, 9.0]
    assert rejected(state, ALICE, "redo") == ErrorCode.NOTHING_TO_UNDO
    apply(state, BOB, "undo")
    assert state.annotations["b1"]["deleted"]


def test_undo_of_a_delete_restores_the_annotation() -> None:
    state = RoomState()
    apply(state, ALICE, "annotation.create", {**marker("m"), "label": "tumour margin"})
    apply(state, ALICE, "annotation.delete", {"id": "m", "base_version": 1})
    event = apply(state, ALICE, "undo")
    assert event["kind"] == "annotation.restored"
    assert state.annotations["m"]["label"] == "tumour margin" and state.annotations["m"]["version"] == 3


def test_a_change_by_someone_else_removes_it_from_my_history() -> None:
    state = RoomState()
    apply(state, ALICE, "annotation.create", marker("a1"))
    apply(state, ALICE, "annotation.create", marker("a2"))
    apply(state, BOB, "annotation.update", {"id": "a2", "base_version": 1, "label": "bob"})
    apply(state, ALICE, "undo")  # skips a2, which Bob changed since
    assert state.annotations["a1"]["deleted"]
    assert state.annotations["a2"]["label"] == "bob"


def test_new_change_clears_redo() -> None:
    state = RoomState()
    apply(state, ALICE, "annotation.create", marker("a1"))
    apply(state, ALICE, "undo")
    apply(state, ALICE, "annotation.create", marker("a2"))
    assert rejected(state, ALICE, "redo") == ErrorCode.NOTHING_TO_UNDO


def test_observers_cannot_annotate_or_present_but_can_chat() -> None:
    state = RoomState()
    assert rejected(state, WATCHER, "annotation.create", marker("w")) == ErrorCode.FORBIDDEN
    assert rejected(state, WATCHER, "scene.model.add", {"id": "m", "name": "x"}) == ErrorCode.FORBIDDEN
    assert rejected(state, WATCHER, "presenter.take") == ErrorCode.INVALID_OP
    apply(state, WATCHER, "chat.send", {"text": "hello"})
    assert state.chat[-1]["text"] == "hello"


def test_one_presenter_at_a_time() -> None:
    state = RoomState()
    apply(state, ALICE, "presenter.take")
    assert rejected(state, BOB, "presenter.take") == ErrorCode.PRESENTER_TAKEN
    assert rejected(state, BOB, "presenter.release") == ErrorCode.NOT_PRESENTER
    assert rejected(state, ALICE, "presenter.handover", {"to": "wendy"}) == ErrorCode.INVALID_OP
    apply(state, ALICE, "presenter.handover", {"to": "bob"})
    assert state.presenter == "bob"
    apply(state, OWNER, "presenter.take")  # owners may take over
    assert state.presenter == "olga"
    apply(state, OWNER, "presenter.release")
    assert state.presenter is None


def test_archived_room_is_read_only() -> None:
    state = RoomState()
    assert rejected(state, ALICE, "room.archive") == ErrorCode.FORBIDDEN
    apply(state, Actor("system", "system"), "room.archive")
    assert rejected(state, OWNER, "chat.send", {"text": "hi"}) == ErrorCode.ROOM_ARCHIVED


def test_scene_models_visibility_opacity_color() -> None:
    state = RoomState()
    apply(state, ALICE, "scene.model.add", {"id": "mandible", "name": "Mandible", "url": "/m.glb"})
    apply(state, BOB, "scene.model.set", {"id": "mandible", "visible": False, "opacity": 0.4, "color": "#AABBCC"})
    assert state.models["mandible"] | {} == {
        **state.models["mandible"],
        "visible": False,
        "opacity": 0.4,
        "color": "#aabbcc",
    }
    assert rejected(state, BOB, "scene.model.set", {"id": "mandible", "opacity": 2}) == ErrorCode.INVALID_OP
    assert rejected(state, BOB, "scene.model.set", {"id": "nope", "visible": True}) == ErrorCode.INVALID_OP


def random_session(state: RoomState, rng: random.Random, ops: int, start: int = 0) -> list[dict[str, Any]]:
    """`ops` random annotation edits, undos, redos and chat by three users; the accepted events."""
    log: list[dict[str, Any]] = []
    actors = [ALICE, BOB, OWNER]
    for i in range(start, start + ops):
        actor = rng.choice(actors)
        live = [a for a in state.annotations.values() if not a.get("deleted")]
        choice = rng.random()
        try:
            if choice < 0.4 or not live:
                event = apply(state, actor, "annotation.create", marker(f"m{i}", rng.random()), op_id=f"op{i}")
            elif choice < 0.6:
                target = rng.choice(live)
                event = apply(
                    state,
                    actor,
                    "annotation.update",
                    {"id": target["id"], "base_version": target["version"], "label": str(i)},
                    op_id=f"op{i}",
                )
            elif choice < 0.7:
                target = rng.choice(live)
                event = apply(
                    state,
                    actor,
                    "annotation.delete",
                    {"id": target["id"], "base_version": target["version"]},
                    op_id=f"op{i}",
                )
            elif choice < 0.85:
                event = apply(state, actor, rng.choice(["undo", "redo"]), op_id=f"op{i}")
            else:
                event = apply(state, actor, "chat.send", {"text": f"msg {i}"}, op_id=f"op{i}")
        except OpRejected:
            continue
        log.append(event)
    return log


def full_state(state: RoomState) -> tuple[Any, ...]:
    return (
        state.snapshot(),
        state.undo,
        state.redo,
        state.op_index,
        state.history_refs,
        state.models,
        state.plans,
    )


def test_replaying_the_log_rebuilds_identical_state() -> None:
    state = RoomState()
    log = random_session(state, random.Random(7), 400)
    rebuilt = replay(log)
    assert rebuilt.snapshot() == state.snapshot()
    assert rebuilt.undo == state.undo and rebuilt.redo == state.redo
    assert (
        rebuilt.seen("alice", log[-1]["op_id"])
        or rebuilt.seen("bob", log[-1]["op_id"])
        or rebuilt.seen("olga", log[-1]["op_id"])
    )


def test_a_clone_is_independent_of_the_state_it_was_copied_from() -> None:
    """The hub rolls back to a clone when another instance wrote first: whatever the live state does
    afterwards (edits, undo rebasing, model changes) must leave the clone exactly as it was."""
    rng = random.Random(11)
    state = RoomState()
    added = apply(state, ALICE, "scene.model.add", {"id": "mandible", "name": "Mandible", "url": "/m.glb"})
    before = random_session(state, rng, 200)
    clone = state.clone()
    expected = full_state(replay([added, *before]))
    after = random_session(state, rng, 200, start=200)
    apply(state, BOB, "scene.model.set", {"id": "mandible", "visible": False, "opacity": 0.3})
    assert full_state(clone) == expected
    assert full_state(clone) != full_state(state)
    for event in after:
        evolve(clone, event)
    assert clone.snapshot()["annotations"] == state.snapshot()["annotations"]
    assert clone.undo == state.undo and clone.redo == state.redo and clone.op_index == state.op_index
