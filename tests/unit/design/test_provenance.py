"""Provenance records round-trip through JSON, and the chain behind a guide walks back to its CT series."""

from __future__ import annotations

import json

import pytest
import trimesh

from server.design.meshes import export_mesh
from server.design.operations import InputArtifact, OperationRun, run_operation
from server.design.provenance import ArtifactRef, Provenance, library_versions, sha256_hex, walk_chain


def test_a_record_round_trips_through_json() -> None:
    record = Provenance(
        operation="design.cut",
        inputs=(ArtifactRef(role="mesh", sha256="a" * 64, artifact_id="art-1", format="ply"),),
        parameters={"plane": {"point_lps": [0.0, 1.0, 2.0], "normal_lps": [0.0, 0.0, 1.0]}},
        outputs=(ArtifactRef(role="positive", sha256="b" * 64), ArtifactRef(role="negative", sha256="c" * 64)),
        report={"volume_change_mm3": 0.0},
        user="u-1",
        room="r-1",
        created_at="2026-01-01T00:00:00Z",
    )
    text = record.to_json()
    assert Provenance.from_json(text) == record
    assert Provenance.from_json(json.loads(text)) == record
    assert json.loads(text)["schema"] == "trinity.provenance/1"
    stored = record.with_output_ids({"positive": "art-2"})
    assert [o.artifact_id for o in stored.outputs] == ["art-2", None]


def test_library_versions_name_the_geometry_libraries() -> None:
    versions = library_versions()
    assert {"trimesh", "manifold3d", "numpy", "fast_simplification"} <= set(versions)
    assert all(v != "absent" for v in versions.values())


def _store(run: OperationRun, records: dict[str, Provenance], blobs: dict[str, bytes], prefix: str) -> dict[str, str]:
    """What the edge does: give each output an id, keep the bytes and the record under that id."""
    ids = {output.role: f"{prefix}-{output.role}" for output in run.outputs}
    record = run.provenance.with_output_ids(ids)
    for output in run.outputs:
        records[ids[output.role]] = record
        blobs[ids[output.role]] = output.data
    return ids


def test_the_chain_from_a_guide_walks_back_to_the_ct_series(bone: trimesh.Trimesh) -> None:
    records: dict[str, Provenance] = {}
    blobs: dict[str, bytes] = {}
    # imaging made the bone surface from a CT series (a record the imaging job would write)
    surface = export_mesh(bone, "ply")
    series = ArtifactRef(
        role="series", sha256=sha256_hex(b"the ct series"), artifact_id="ct-series-1", kind="ct_series"
    )
    records["bone-1"] = Provenance(
        operation="imaging.surface",
        inputs=(series,),
        parameters={"preset": "bone"},
        outputs=(ArtifactRef(role="surface", sha256=sha256_hex(surface), artifact_id="bone-1", format="ply"),),
    )
    blobs["bone-1"] = surface
    cut = run_operation(
        "cut",
        {"mesh": InputArtifact("bone-1", blobs["bone-1"], "ply")},
        {"plane": {"point_lps": [0, 0, -20], "normal_lps": [0, 0, 1]}},
    )
    cut_ids = _store(cut, records, blobs, "cut-1")
    guide = run_operation(
        "guide",
        {"bone": InputArtifact(cut_ids["positive"], blobs[cut_ids["positive"]], "ply")},
        {
            "region": {"center_lps": [11.0, 0.0, 10.0], "radius_mm": 8.0},
            "trajectories": [{"entry_lps": [11.0, 0.0, 8.0], "target_lps": [0.0, 0.0, 8.0], "diameter_mm": 2.0}],
            "resolution_mm": 0.6,
        },
    )
    guide_ids = _store(guide, records, blobs, "guide-1")

    chain = walk_chain(guide_ids["guide"], records.get)
    assert [r.operation for r in chain.records] == ["design.guide", "design.cut", "imaging.surface"]
    assert [r.artifact_id for r in chain.roots] == ["ct-series-1"]
    assert chain.roots[0].kind == "ct_series"
    # each link's input hash is the hash of the bytes stored under that id
    for record in chain.records:
        for source in record.inputs:
            if source.artifact_id in blobs:
                assert sha256_hex(blobs[source.artifact_id]) == source.sha256
    exported = json.loads(chain.to_json())
    assert exported["artifact_id"] == "guide-1-guide" and len(exported["records"]) == 3


def test_walking_survives_shared_inputs_and_cycles() -> None:
    def record(name: str, *inputs: str) -> Provenance:
        refs = tuple(ArtifactRef(role=f"in{i}", sha256="0" * 64, artifact_id=a) for i, a in enumerate(inputs))
        return Provenance(
            operation=name,
            inputs=refs,
            parameters={},
            outputs=(ArtifactRef(role="out", sha256="1" * 64, artifact_id=name),),
        )

    records = {
        "union": record("union", "left", "right"),
        "left": record("left", "base"),
        "right": record("right", "base"),
        "loop": record("loop", "loop"),
    }
    chain = walk_chain("union", records.get)
    assert [r.operation for r in chain.records] == ["union", "left", "right"]
    assert [r.artifact_id for r in chain.roots] == ["base"]  # reached twice, listed once
    assert [r.operation for r in walk_chain("loop", records.get).records] == ["loop"]


def test_unknown_schema_is_refused() -> None:
    with pytest.raises(ValueError):
        Provenance.from_json('{"schema": "other/9", "operation": "x"}')
