"""The room's scene: which models everyone sees, in which version, colour and opacity. PURE.

A model is a lineage of artifact versions (the CT bone model, then its cut, then its repair…). Adding
a model whose id is already in the scene with a version it does not have yet adds that version and
shows it: that is how a finished job publishes "version 2 of the mandible". Older versions stay listed
and anyone can switch back (`scene.model.set` with `version`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.rooms.protocol import MAX_LABEL_CHARS, identifier, require

MAX_VERSIONS = 200
MAX_URL_CHARS = 500


@dataclass(frozen=True)
class SceneDecision:
    kind: str
    data: dict[str, Any]


def color(value: Any) -> str:
    ok = isinstance(value, str) and len(value) == 7 and value[0] == "#"
    ok = ok and all(c in "0123456789abcdefABCDEF" for c in value[1:])
    require(ok, "color must be #rrggbb")
    return str(value).lower()


def _version_entry(payload: dict[str, Any]) -> dict[str, Any]:
    version = payload.get("version", 1)
    require(isinstance(version, int) and not isinstance(version, bool) and version >= 1, "version must be >= 1")
    url = payload.get("url")
    # Same-origin paths only: a model URL must never point a browser at another host.
    same_origin = isinstance(url, str) and url.startswith("/") and not url.startswith("//") and "\\" not in url
    require(url is None or (same_origin and len(url) <= MAX_URL_CHARS), "url must be a path on this server")
    artifact_id = payload.get("artifact_id")
    if artifact_id is not None:
        artifact_id = identifier(artifact_id, "artifact_id")
    return {"version": version, "url": url, "artifact_id": artifact_id}


def decide_model(models: dict[str, dict[str, Any]], kind: str, payload: dict[str, Any]) -> SceneDecision:
    model_id = identifier(payload.get("id"), "id")
    current = models.get(model_id)
    out: dict[str, Any] = {"id": model_id}
    if kind == "scene.model.add":
        entry = _version_entry(payload)
        if current is not None:
            known = {v["version"] for v in current.get("versions", [])}
            require(entry["version"] not in known, f"model {model_id!r} already has version {entry['version']}")
            require(len(known) < MAX_VERSIONS, f"model {model_id!r} has too many versions")
            versions = sorted([*current.get("versions", []), entry], key=lambda v: v["version"])
            out.update(entry, versions=versions, visible=True)
            return SceneDecision("scene.model.changed", out)
        name = payload.get("name")
        require(isinstance(name, str) and 0 < len(name) <= MAX_LABEL_CHARS, "model name is required")
        out.update(entry, name=name, versions=[entry], visible=True, opacity=1.0, color="#e8dcc8")
        if "color" in payload:
            out["color"] = color(payload["color"])
        return SceneDecision("scene.model.added", out)
    require(current is not None, f"model {model_id!r} is not in the scene")
    assert current is not None
    if "version" in payload:
        chosen = [v for v in current.get("versions", []) if v["version"] == payload["version"]]
        require(bool(chosen), f"model {model_id!r} has no version {payload['version']!r}")
        out.update(chosen[0])
    if "visible" in payload:
        require(isinstance(payload["visible"], bool), "visible must be true or false")
        out["visible"] = payload["visible"]
    if "opacity" in payload:
        op = payload["opacity"]
        require(isinstance(op, int | float) and not isinstance(op, bool) and 0 <= op <= 1, "opacity must be in [0, 1]")
        out["opacity"] = float(op)
    if "color" in payload:
        out["color"] = color(payload["color"])
    return SceneDecision("scene.model.changed", out)
