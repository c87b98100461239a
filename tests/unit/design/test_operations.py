"""Operations as jobs run them: bytes and parameters in, bytes, report and provenance out; the same
inputs give the same bytes."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import trimesh

from server.design.errors import InvalidDesignParameters, MeshFormatError, UnknownOperation
from server.design.meshes import export_mesh, load_mesh, make_mesh
from server.design.operations import OPERATIONS, InputArtifact, run_operation
from server.design.provenance import sha256_hex
from tests.unit.design.shapes import sphere

PLANE = {"point_lps": [1.0, 0.0, 10.0], "normal_lps": [0.1, 0.2, 1.0]}
CASES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "analyze": (("mesh",), {"thickness_samples": 32}),
    "repair": (("mesh",), {"keep": "largest"}),
    "cut": (("mesh",), {"plane": PLANE}),
    "wedge": (("mesh",), {"planes": [PLANE, {"point_lps": [0, 0, 25], "normal_lps": [0.3, 0, -1]}]}),
    "mirror": (("mesh", "target"), {"plane": {"point_lps": [0, 0, 0], "normal_lps": [1, 0, 0]}, "max_iterations": 30}),
    "boolean": (("a", "b"), {"op": "difference"}),
    "guide": (
        ("bone",),
        {
            "region": {"kind": "sphere", "center_lps": [11.0, 0.0, 10.0], "radius_mm": 7.0},
            "trajectories": [{"entry_lps": [11.0, 0.0, 9.0], "target_lps": [0.0, 0.0, 9.0], "diameter_mm": 2.0}],
            "resolution_mm": 0.6,
        },
    ),
    "decimate": (("mesh",), {"target_faces": 3000}),
    "smooth": (("mesh",), {"iterations": 5}),
    "remesh": (("mesh",), {"max_edge_mm": 2.0}),
}


@pytest.fixture(scope="module")
def inputs(bone: trimesh.Trimesh) -> dict[str, InputArtifact]:
    tool = sphere(12.0, (8.0, 0.0, 10.0))
    mirrored_target = make_mesh(
        np.asarray(bone.vertices) * [-1.0, 1.0, 1.0] + [0.5, -0.3, 0.2], np.asarray(bone.faces)[:, ::-1]
    )
    return {
        "bone": InputArtifact("bone-1", export_mesh(bone, "ply"), "ply"),
        "mesh": InputArtifact("bone-1", export_mesh(bone, "stl"), "stl"),
        "target": InputArtifact("other-side", export_mesh(mirrored_target, "ply"), "ply"),
        "a": InputArtifact("bone-1", export_mesh(bone, "ply"), "ply"),
        "b": InputArtifact("tool", export_mesh(tool, "3mf"), "3mf"),
    }


def test_every_operation_has_a_case() -> None:
    assert set(CASES) == set(OPERATIONS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_inputs_give_the_same_bytes(name: str, inputs: dict[str, InputArtifact]) -> None:
    roles, params = CASES[name]
    given = {role: inputs[role] for role in roles}
    first = run_operation(name, given, params)
    second = run_operation(name, given, params)
    assert [o.role for o in first.outputs] == list(OPERATIONS[name].outputs)
    assert [o.data for o in first.outputs] == [o.data for o in second.outputs]
    assert first.provenance.to_json() == second.provenance.to_json()
    assert first.report == second.report
    for output in first.outputs:
        assert output.sha256 == sha256_hex(output.data)
        assert len(load_mesh(output.data, output.format).faces) == output.faces
    record = first.provenance
    assert record.operation == f"design.{name}"
    assert {(r.role, r.artifact_id, r.sha256) for r in record.inputs} == {
        (role, given[role].artifact_id, sha256_hex(given[role].data)) for role in roles
    }
    assert [o.sha256 for o in record.outputs] == [o.sha256 for o in first.outputs]


@pytest.mark.parametrize("fmt", ["stl", "ply", "glb", "3mf"])
def test_output_formats_are_deterministic_too(fmt: str, inputs: dict[str, InputArtifact]) -> None:
    params = {"plane": PLANE}
    first = run_operation("cut", {"mesh": inputs["mesh"]}, params, output_format=fmt)
    second = run_operation("cut", {"mesh": inputs["mesh"]}, params, output_format=fmt)
    assert [o.data for o in first.outputs] == [o.data for o in second.outputs]
    assert all(o.format == fmt for o in first.outputs)


def test_parameters_are_normalized_in_the_record(inputs: dict[str, InputArtifact]) -> None:
    run = run_operation("cut", {"mesh": inputs["mesh"]}, {"plane": "1,0,10,0,0,2"})
    assert run.provenance.parameters == {"plane": {"point_lps": [1.0, 0.0, 10.0], "normal_lps": [0.0, 0.0, 1.0]}}


def test_unknown_operation_parameter_and_input_are_refused(inputs: dict[str, InputArtifact]) -> None:
    with pytest.raises(UnknownOperation):
        run_operation("explode", {"mesh": inputs["mesh"]}, {})
    with pytest.raises(InvalidDesignParameters) as caught:
        run_operation("cut", {"mesh": inputs["mesh"]}, {"plane": PLANE, "planee": PLANE})
    assert caught.value.details["field"] == "planee"
    with pytest.raises(InvalidDesignParameters):
        run_operation("boolean", {"a": inputs["a"]}, {"op": "union"})
    with pytest.raises(InvalidDesignParameters):
        run_operation("cut", {"mesh": inputs["mesh"]}, {"plane": {"point_lps": [0, 0, 0], "normal_lps": [0, 0, 0]}})


def test_bad_input_bytes_fail_with_the_format_error(inputs: dict[str, InputArtifact]) -> None:
    with pytest.raises(MeshFormatError):
        run_operation(
            "cut",
            {
                "mesh": InputArtifact(
                    "x", b"solid x\nfacet normal a b c\nouter loop\nvertex 1 2\nendloop\nendfacet\nendsolid x\n", "stl"
                )
            },
            {"plane": PLANE},
        )


@pytest.mark.parametrize("name", sorted(CASES))
def test_normalizing_twice_changes_nothing(name: str) -> None:
    """The edge normalizes a request to answer 4xx at once; the job normalizes again."""
    normalize = OPERATIONS[name].normalize
    once = normalize(CASES[name][1])
    assert normalize(once) == once
    assert json.loads(json.dumps(once)) == once  # JSON-able as it is


def test_guide_label_is_normalized() -> None:
    raw = dict(CASES["guide"][1], label={"text": "l-3", "anchor_lps": "11,0,12"})
    once = OPERATIONS["guide"].normalize(raw)
    assert once["label"] == {
        "text": "L-3",
        "anchor_lps": [11.0, 0.0, 12.0],
        "height_mm": 4.0,
        "raised_mm": 0.6,
        "up_lps": [0.0, 0.0, 1.0],
    }
    assert OPERATIONS["guide"].normalize(once) == once
