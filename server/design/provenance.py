"""Where an artifact came from: the operation, its inputs (artifact ids and sha256), its normalized
parameters and the versions of the libraries that computed it.

An operation writes a record without time, user or room, so the record itself is reproducible; the
edge adds those (`dataclasses.replace`) and the artifact ids it stores the outputs under. A record per
operation run lists all its outputs; `walk_chain` follows inputs back (guide → cut bone → surface →
CT series) through a lookup the caller provides, so this module knows no database.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from typing import Any

SCHEMA = "trinity.provenance/1"
LIBRARIES = ("trimesh", "manifold3d", "numpy", "scipy", "fast_simplification", "shapely")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def library_versions() -> dict[str, str]:
    return dict(_versions())


@cache
def _versions() -> tuple[tuple[str, str], ...]:
    versions = []
    for name in LIBRARIES:
        try:
            versions.append((name, importlib.metadata.version(name.replace("_", "-"))))
        except importlib.metadata.PackageNotFoundError:
            versions.append((name, "absent"))
    return tuple(versions)


@dataclass(frozen=True)
class ArtifactRef:
    """An input or output artifact: its role in the operation (`bone`, `positive`, ...), its id where
    known (outputs get theirs when stored), its content hash, and what kind of artifact it is."""

    role: str
    sha256: str
    artifact_id: str | None = None
    kind: str = "mesh"  # mesh | ct_series | mask | ...
    format: str | None = None

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ArtifactRef:
        return cls(
            role=str(value["role"]),
            sha256=str(value["sha256"]),
            artifact_id=value.get("artifact_id"),
            kind=str(value.get("kind", "mesh")),
            format=value.get("format"),
        )


@dataclass(frozen=True)
class Provenance:
    operation: str
    inputs: tuple[ArtifactRef, ...]
    parameters: Mapping[str, Any]
    outputs: tuple[ArtifactRef, ...]
    library_versions: Mapping[str, str] = field(default_factory=library_versions)
    report: Mapping[str, Any] = field(default_factory=dict)
    # filled in by the edge, not by the operation
    user: str | None = None
    room: str | None = None
    created_at: str | None = None  # ISO 8601, UTC
    job_id: str | None = None

    def with_output_ids(self, ids: Mapping[str, str]) -> Provenance:
        """The record once the outputs are stored: `ids` maps role → artifact id."""
        return replace(
            self, outputs=tuple(replace(o, artifact_id=ids.get(o.role, o.artifact_id)) for o in self.outputs)
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["schema"] = SCHEMA
        return out

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces; equal records give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any]) -> Provenance:
        value = json.loads(text) if isinstance(text, str) else text
        if value.get("schema", SCHEMA) != SCHEMA:
            raise ValueError(f"unknown provenance schema {value.get('schema')!r}")
        return cls(
            operation=str(value["operation"]),
            inputs=tuple(ArtifactRef.from_json(i) for i in value.get("inputs", ())),
            parameters=dict(value.get("parameters", {})),
            outputs=tuple(ArtifactRef.from_json(o) for o in value.get("outputs", ())),
            library_versions=dict(value.get("library_versions", {})),
            report=dict(value.get("report", {})),
            user=value.get("user"),
            room=value.get("room"),
            created_at=value.get("created_at"),
            job_id=value.get("job_id"),
        )


@dataclass(frozen=True)
class Chain:
    """The records behind an artifact, newest first, and the roots they start from (artifacts no
    operation made here: a CT series, an uploaded mesh)."""

    artifact_id: str
    records: tuple[Provenance, ...]
    roots: tuple[ArtifactRef, ...]

    def to_json(self) -> str:
        return json.dumps(
            {
                "schema": SCHEMA,
                "artifact_id": self.artifact_id,
                "records": [r.to_dict() for r in self.records],
                "roots": [asdict(r) for r in self.roots],
            },
            sort_keys=True,
            separators=(",", ":"),
        )


def walk_chain(artifact_id: str, lookup: Callable[[str], Provenance | None], *, max_records: int = 1000) -> Chain:
    """Follow `artifact_id` back through its inputs, breadth first. `lookup(id)` returns the record that
    produced the artifact, or None for a root. Each record is visited once, so shared inputs and
    (corrupt) cycles do not repeat."""
    records: list[Provenance] = []
    roots: list[ArtifactRef] = []
    seen_artifacts: set[str] = set()
    queue: list[tuple[str, ArtifactRef | None]] = [(artifact_id, None)]
    seen_records: set[str] = set()
    while queue:
        current, ref = queue.pop(0)
        if current in seen_artifacts:
            continue
        seen_artifacts.add(current)
        record = lookup(current)
        if record is None:
            roots.append(ref or ArtifactRef(role="self", sha256="", artifact_id=current))
            continue
        key = record.to_json()
        if key in seen_records:
            continue
        seen_records.add(key)
        records.append(record)
        if len(records) >= max_records:
            raise ValueError(f"provenance of {artifact_id} has more than {max_records} records")
        for source in record.inputs:
            if source.artifact_id is None:
                roots.append(source)
            else:
                queue.append((source.artifact_id, source))
    return Chain(artifact_id, tuple(records), tuple(roots))
