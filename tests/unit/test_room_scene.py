"""The room's scene: model lineages with versions published by jobs, switchable by anyone."""

from __future__ import annotations

from server.rooms.protocol import ErrorCode
from server.rooms.state import SYSTEM_USER, Actor, RoomState
from tests.unit.test_room_state import ALICE, apply, rejected

SYSTEM = Actor(SYSTEM_USER, "system")


def test_a_new_version_of_a_model_is_shown_and_older_ones_stay_selectable() -> None:
    state = RoomState()
    apply(
        state, SYSTEM, "scene.model.add", {"id": "bone", "name": "Mandible", "url": "/api/a/1.glb", "artifact_id": "a1"}
    )
    apply(state, ALICE, "scene.model.set", {"id": "bone", "opacity": 0.5})
    apply(state, SYSTEM, "scene.model.add", {"id": "bone", "version": 2, "url": "/api/a/2.glb", "artifact_id": "a2"})
    model = state.models["bone"]
    assert (model["version"], model["artifact_id"], model["url"]) == (2, "a2", "/api/a/2.glb")
    assert [v["version"] for v in model["versions"]] == [1, 2]
    assert model["opacity"] == 0.5 and model["name"] == "Mandible"

    apply(state, ALICE, "scene.model.set", {"id": "bone", "version": 1})
    assert (state.models["bone"]["version"], state.models["bone"]["artifact_id"]) == (1, "a1")
    assert rejected(state, ALICE, "scene.model.set", {"id": "bone", "version": 7}) == ErrorCode.INVALID_OP


def test_publishing_the_same_version_twice_is_refused() -> None:
    state = RoomState()
    apply(state, SYSTEM, "scene.model.add", {"id": "bone", "name": "Mandible", "version": 1})
    assert rejected(state, SYSTEM, "scene.model.add", {"id": "bone", "version": 1}) == ErrorCode.INVALID_OP


def test_model_urls_must_stay_on_this_server() -> None:
    state = RoomState()
    for url in ("https://evil.example/x.glb", "//evil.example/x.glb", "javascript:alert(1)"):
        assert rejected(state, ALICE, "scene.model.add", {"id": "m", "name": "x", "url": url}) == ErrorCode.INVALID_OP
