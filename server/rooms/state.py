"""The room state machine: pure, deterministic, event-sourced.

`decide(state, actor, kind, payload)` checks an operation against the current state and returns the
event it produces, or raises `OpRejected`. It never mutates. `evolve(state, event)` applies a sequenced
event. The hub persists the event between the two, so a rejected or failed write leaves the state
untouched, and replaying the stored log through `evolve` rebuilds the exact same state on any instance.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from server.rooms.protocol import (
    ANNOTATION_KINDS,
    MAX_LABEL_CHARS,
    ErrorCode,
    OpRejected,
    annotation_geometry,
    identifier,
    require,
)
from server.rooms.record import decide_record, evolve_record
from server.rooms.scene import color, decide_model

RoomRole = Literal["owner", "participant", "observer", "system"]
UNDO_DEPTH = 100
CHAT_IN_SNAPSHOT = 200
SYSTEM_USER = "system"


@dataclass(frozen=True)
class Actor:
    user_id: str
    role: RoomRole

    @property
    def can_edit(self) -> bool:
        return self.role in ("owner", "participant", "system")


@dataclass(frozen=True)
class Limits:
    annotation_max_bytes: int = 16 * 1024
    chat_max_chars: int = 4000


@dataclass(frozen=True)
class Decision:
    """The event an accepted operation produces (the hub adds seq, user, op_id and time)."""

    kind: str
    data: dict[str, Any]


@dataclass
class UndoEntry:
    annotation_id: str
    before: dict[str, Any] | None  # fields to restore (None: it did not exist or was deleted)
    result_version: int  # the annotation's version right after the recorded change

    def copy(self) -> UndoEntry:
        return UndoEntry(self.annotation_id, self.before, self.result_version)  # `before` is never mutated


@dataclass
class RoomState:
    seq: int = 0
    archived: bool = False
    annotations: dict[str, dict[str, Any]] = field(default_factory=dict)  # includes tombstones
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    presenter: str | None = None
    chat: list[dict[str, Any]] = field(default_factory=list)
    undo: dict[str, list[UndoEntry]] = field(default_factory=dict)
    redo: dict[str, list[UndoEntry]] = field(default_factory=dict)
    op_index: dict[tuple[str, str], int] = field(default_factory=dict)  # (user, op_id) -> seq
    history_refs: dict[str, set[str]] = field(default_factory=dict)  # annotation -> users whose history has it
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)  # plan versions shown in the room (record.py)
    snapshots: list[dict[str, Any]] = field(default_factory=list)

    def clone(self) -> RoomState:
        """An independent copy, far cheaper than deepcopy: annotation records, op-index entries, chat
        lines, snapshots and history-ref sets are never changed in place by `evolve` (it replaces them),
        so their containers are copied shallowly; only what `evolve` mutates (model and plan dicts, undo
        entries) is copied one level deeper."""
        return RoomState(
            seq=self.seq,
            archived=self.archived,
            annotations=self.annotations.copy(),
            models={k: dict(v) for k, v in self.models.items()},
            presenter=self.presenter,
            chat=self.chat.copy(),
            undo={user: [e.copy() for e in stack] for user, stack in self.undo.items()},
            redo={user: [e.copy() for e in stack] for user, stack in self.redo.items()},
            op_index=self.op_index.copy(),
            history_refs=self.history_refs.copy(),
            plans={k: dict(v) for k, v in self.plans.items()},
            snapshots=self.snapshots.copy(),
        )

    def seen(self, user_id: str, op_id: str) -> int | None:
        return self.op_index.get((user_id, op_id))

    def snapshot(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "archived": self.archived,
            "annotations": [a for a in self.annotations.values() if not a.get("deleted")],
            "models": list(self.models.values()),
            "presenter": self.presenter,
            "chat": self.chat[-CHAT_IN_SNAPSHOT:],
            "plans": sorted(self.plans.values(), key=lambda p: p["version"]),
            "snapshots": list(self.snapshots),
        }


_EDITABLE_FIELDS = ("data", "label", "color")


def _label(value: Any) -> str:
    require(
        isinstance(value, str) and len(value) <= MAX_LABEL_CHARS, f"label must be at most {MAX_LABEL_CHARS} characters"
    )
    return str(value)


def _check_size(data: dict[str, Any], limits: Limits) -> None:
    size = len(orjson.dumps(data))
    if size > limits.annotation_max_bytes:
        raise OpRejected(ErrorCode.TOO_LARGE, f"annotation is {size} bytes, limit {limits.annotation_max_bytes}")


def _live(state: RoomState, annotation_id: Any) -> dict[str, Any]:
    annotation = state.annotations.get(identifier(annotation_id, "id"))
    if annotation is None or annotation.get("deleted"):
        raise OpRejected(ErrorCode.NOT_FOUND, f"annotation {annotation_id!r} does not exist")
    return annotation


def _check_base(annotation: dict[str, Any], payload: dict[str, Any]) -> None:
    base = payload.get("base_version")
    require(isinstance(base, int) and not isinstance(base, bool), "base_version (integer) is required")
    if base != annotation["version"]:
        raise OpRejected(
            ErrorCode.STALE_VERSION,
            f"annotation {annotation['id']} is at version {annotation['version']}, not {base}",
            current=annotation,
        )


def _editable(annotation: dict[str, Any] | None) -> dict[str, Any] | None:
    if annotation is None or annotation.get("deleted"):
        return None
    # Records are replaced, never changed in place, so their values can be shared (an undo copies them).
    return {k: annotation[k] for k in ("kind", *_EDITABLE_FIELDS) if k in annotation}


def _record(
    annotation_id: str, fields: dict[str, Any] | None, previous: dict[str, Any] | None, actor: Actor
) -> dict[str, Any]:
    """The annotation as it will be after this change: what every client receives and stores."""
    version = (previous["version"] if previous else 0) + 1
    if fields is None:
        return {
            "id": annotation_id,
            "kind": previous["kind"] if previous else None,
            "deleted": True,
            "version": version,
            "updated_by": actor.user_id,
        }
    author = previous.get("author", actor.user_id) if previous else actor.user_id
    return {"id": annotation_id, **fields, "version": version, "author": author, "updated_by": actor.user_id}


def _decide_annotation(state: RoomState, actor: Actor, kind: str, payload: dict[str, Any], limits: Limits) -> Decision:
    if kind == "annotation.create":
        annotation_id = identifier(payload.get("id"), "id")
        if annotation_id in state.annotations:
            raise OpRejected(ErrorCode.CONFLICT, f"annotation id {annotation_id!r} is already used")
        a_kind = payload.get("kind")
        valid_kind = isinstance(a_kind, str) and a_kind in ANNOTATION_KINDS
        require(valid_kind, f"kind must be one of {sorted(ANNOTATION_KINDS)}")
        fields: dict[str, Any] = {
            "kind": a_kind,
            "data": annotation_geometry(str(a_kind), payload.get("data"), limits.chat_max_chars),
        }
        if "label" in payload:
            fields["label"] = _label(payload["label"])
        if "color" in payload:
            fields["color"] = color(payload["color"])
        _check_size(fields, limits)
        return Decision("annotation.created", {"annotation": _record(annotation_id, fields, None, actor)})
    current = _live(state, payload.get("id"))
    _check_base(current, payload)
    if kind == "annotation.delete":
        return Decision("annotation.deleted", {"annotation": _record(current["id"], None, current, actor)})
    fields = _editable(current) or {}
    if "data" in payload:
        fields["data"] = annotation_geometry(current["kind"], payload["data"], limits.chat_max_chars)
    if "label" in payload:
        fields["label"] = _label(payload["label"])
    if "color" in payload:
        fields["color"] = color(payload["color"])
    require(any(k in payload for k in _EDITABLE_FIELDS), "annotation.update needs data, label or color")
    _check_size(fields, limits)
    return Decision("annotation.updated", {"annotation": _record(current["id"], fields, current, actor)})


def _decide_history(state: RoomState, actor: Actor, kind: str) -> Decision:
    stack = (state.undo if kind == "undo" else state.redo).get(actor.user_id) or []
    if not stack:
        raise OpRejected(ErrorCode.NOTHING_TO_UNDO, f"nothing to {kind}")
    entry = stack[-1]
    current = state.annotations.get(entry.annotation_id)
    if current is None or current["version"] != entry.result_version:
        raise OpRejected(
            ErrorCode.CONFLICT,
            f"annotation {entry.annotation_id} was changed by someone else since; cannot {kind}",
            current=current,
        )
    event = "annotation.deleted" if entry.before is None else "annotation.updated"
    if entry.before is not None and current.get("deleted"):
        event = "annotation.restored"
    record = _record(entry.annotation_id, copy.deepcopy(entry.before), current, actor)
    return Decision(event, {"annotation": record, kind: True})


def _decide_presenter(
    state: RoomState, actor: Actor, kind: str, payload: dict[str, Any], members: dict[str, RoomRole]
) -> Decision:
    if kind == "presenter.take":
        if state.presenter not in (None, actor.user_id) and actor.role not in ("owner", "system"):
            raise OpRejected(ErrorCode.PRESENTER_TAKEN, f"{state.presenter} is presenting; ask them to hand over")
        require(actor.role != "observer", "observers cannot present")
        return Decision("presenter.changed", {"presenter": actor.user_id})
    if kind == "presenter.release":
        if state.presenter != actor.user_id and actor.role not in ("owner", "system"):
            raise OpRejected(ErrorCode.NOT_PRESENTER, "only the presenter or an owner can release")
        return Decision("presenter.changed", {"presenter": None})
    # handover
    if state.presenter != actor.user_id:
        raise OpRejected(ErrorCode.NOT_PRESENTER, "only the presenter can hand over")
    to = identifier(payload.get("to"), "to")
    role = members.get(to)
    require(role is not None, f"{to} is not a member of this room")
    require(role != "observer", "observers cannot present")
    return Decision("presenter.changed", {"presenter": to})


def decide(
    state: RoomState,
    actor: Actor,
    kind: str,
    payload: dict[str, Any],
    *,
    limits: Limits = Limits(),
    members: dict[str, RoomRole] | None = None,
) -> Decision:
    """Check one operation; return its event or raise OpRejected. Never mutates `state`."""
    if state.archived:
        raise OpRejected(ErrorCode.ROOM_ARCHIVED, "the room is archived; it is read-only")
    if not isinstance(payload, dict):
        raise OpRejected(ErrorCode.INVALID_OP, "op payload must be an object")
    if kind == "room.archive":
        if actor.role not in ("owner", "system"):
            raise OpRejected(ErrorCode.FORBIDDEN, "only owners and admins archive rooms")
        return Decision("room.archived", {})
    if kind == "chat.send":
        text = payload.get("text")
        if not isinstance(text, str) or not text.strip():
            raise OpRejected(ErrorCode.INVALID_OP, "chat text must not be empty")
        if len(text) > limits.chat_max_chars:
            raise OpRejected(ErrorCode.TOO_LARGE, f"chat text is {len(text)} characters, limit {limits.chat_max_chars}")
        return Decision("chat.message", {"text": text})
    if kind.startswith("presenter."):
        return _decide_presenter(state, actor, kind, payload, members or {})
    if kind.startswith(("plan.", "record.")):
        recorded = decide_record(state.plans, actor.role == "system", kind, payload)
        return Decision(recorded.kind, recorded.data)
    if not actor.can_edit:
        raise OpRejected(ErrorCode.FORBIDDEN, f"{actor.role}s cannot change annotations or the scene")
    if kind.startswith("annotation."):
        return _decide_annotation(state, actor, kind, payload, limits)
    if kind in ("undo", "redo"):
        return _decide_history(state, actor, kind)
    if kind.startswith("scene.model."):
        scene = decide_model(state.models, kind, payload)
        return Decision(scene.kind, scene.data)
    raise OpRejected(ErrorCode.UNKNOWN_TYPE, f"unknown op kind {kind!r}")


def _push(stacks: dict[str, list[UndoEntry]], user: str, entry: UndoEntry) -> None:
    stack = stacks.setdefault(user, [])
    stack.append(entry)
    del stack[:-UNDO_DEPTH]


def _evolve_annotation(state: RoomState, event: dict[str, Any]) -> None:
    data = event["data"]
    user = event["user"]
    record = data["annotation"]
    annotation_id = record["id"]
    before = _editable(state.annotations.get(annotation_id))
    version = record["version"]
    state.annotations[annotation_id] = record
    # Every change records what it replaced; undoing it is itself a change whose entry (what the undo
    # replaced) is exactly what a redo must restore, so both stacks hold the same kind of entry.
    entry = UndoEntry(annotation_id, before=before, result_version=version)
    if data.get("undo"):
        state.undo[user].pop()
        _push(state.redo, user, entry)
        _rebase(state.undo.get(user, []), annotation_id, version)
    elif data.get("redo"):
        state.redo[user].pop()
        _push(state.undo, user, entry)
        _rebase(state.redo.get(user, []), annotation_id, version)
    else:
        _push(state.undo, user, entry)
        state.redo.pop(user, None)
    _forget_for_others(state, annotation_id, user)


def _rebase(stack: list[UndoEntry], annotation_id: str, version: int) -> None:
    """After an undo (redo) the annotation is back in the state its previous undo (redo) entry left
    it in, only at a newer version: that entry must now expect the newer version."""
    for entry in reversed(stack):
        if entry.annotation_id == annotation_id:
            entry.result_version = version
            return


def _forget_for_others(state: RoomState, annotation_id: str, user: str) -> None:
    """Someone else's history for this annotation is obsolete once it changed under them.

    `history_refs` says whose stacks mention the annotation, so this costs nothing in the usual case
    instead of scanning every user's history on every event."""
    for other in state.history_refs.get(annotation_id, ()):
        if other == user:
            continue
        for stacks in (state.undo, state.redo):
            stack = stacks.get(other)
            if stack:
                stack[:] = [e for e in stack if e.annotation_id != annotation_id]
    state.history_refs[annotation_id] = {user}


def evolve(state: RoomState, event: dict[str, Any], *, track_history: bool = True) -> None:
    """Apply one sequenced event (as stored) to the state. Replicas that never decide (clients) skip
    the undo/redo bookkeeping with track_history=False."""
    kind = event["kind"]
    data = event["data"]
    if kind.startswith("annotation."):
        if track_history:
            _evolve_annotation(state, event)
        else:
            state.annotations[data["annotation"]["id"]] = data["annotation"]
    elif kind == "chat.message":
        state.chat.append({"seq": event["seq"], "user": event["user"], "text": data["text"], "ts": event.get("ts")})
        del state.chat[:-CHAT_IN_SNAPSHOT]
    elif kind == "presenter.changed":
        state.presenter = data["presenter"]
    elif kind == "scene.model.added":
        state.models[data["id"]] = dict(data)
    elif kind == "scene.model.changed":
        state.models[data["id"]].update(data)
    elif kind == "room.archived":
        state.archived = True
    elif kind.startswith(("plan.", "record.")):
        evolve_record(state.plans, state.snapshots, event)
    if track_history and event.get("op_id"):
        state.op_index[(event["user"], event["op_id"])] = event["seq"]
    state.seq = event["seq"]


def replay(events: list[dict[str, Any]], state: RoomState | None = None) -> RoomState:
    state = state or RoomState()
    for event in events:
        evolve(state, event)
    return state
