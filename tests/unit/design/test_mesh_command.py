"""`trinity mesh ...` end to end on files in a temporary folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trimesh

from server.design.errors import MeshFormatError, UnsupportedMeshFormat
from server.design.mesh_command import add_parser
from server.design.meshes import export_mesh, load_mesh
from server.design.provenance import Provenance, sha256_hex
from server.design.topology import is_watertight
from tests.unit.design.shapes import sphere


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="trinity")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["mesh", *argv])
    assert args.fn(args, None) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def bone_file(tmp_path: Path, bone: trimesh.Trimesh) -> Path:
    path = tmp_path / "bone.stl"
    path.write_bytes(export_mesh(bone, "stl"))
    return path


def _load(path: Path) -> trimesh.Trimesh:
    return load_mesh(path.read_bytes(), path.suffix.lstrip("."))


def test_info_prints_the_analysis(bone_file: Path, bone: trimesh.Trimesh, capsys: pytest.CaptureFixture[str]) -> None:
    out = run(["info", str(bone_file), "--thickness-samples", "16"], capsys)
    assert out["operation"] == "analyze" and out["outputs"] == []
    assert out["report"]["watertight"] and out["report"]["faces"] == len(bone.faces)


def test_cut_writes_both_pieces_and_the_provenance(
    bone_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record_path = tmp_path / "cut.json"
    out = run(
        [
            "cut",
            str(bone_file),
            "--plane",
            "0,0,10,0,0.2,1",
            "--out-dir",
            str(tmp_path / "cut"),
            "--provenance",
            str(record_path),
        ],
        capsys,
    )
    paths = {o["role"]: Path(o["path"]) for o in out["outputs"]}
    assert set(paths) == {"positive", "negative"}
    volumes = []
    for role, path in paths.items():
        assert path.name == f"bone-{role}.stl"
        assert out["outputs"][0]["sha256"] in {sha256_hex(p.read_bytes()) for p in paths.values()}
        piece = _load(path)
        assert is_watertight(np.asarray(piece.faces))
        volumes.append(piece.volume)
    record = Provenance.from_json(record_path.read_text())
    assert record.operation == "design.cut"
    assert record.inputs[0].sha256 == sha256_hex(bone_file.read_bytes())
    assert {o.artifact_id for o in record.outputs} == {str(p) for p in paths.values()}
    assert sum(volumes) == pytest.approx(out["report"]["input"]["volume_mm3"], rel=1e-3)


def test_wedge_writes_wedge_and_remaining(bone_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run(
        [
            "wedge",
            str(bone_file),
            "--plane",
            "0,0,0,0,0,1",
            "--plane",
            "0,0,12,0,0.3,-1",
            "--out-dir",
            str(tmp_path),
            "--format",
            "ply",
        ],
        capsys,
    )
    assert sorted(Path(o["path"]).name for o in out["outputs"]) == ["bone-remaining.ply", "bone-wedge.ply"]
    assert abs(out["report"]["volume_change_mm3"]) < 1e-3


def test_mirror_with_alignment(
    bone_file: Path, tmp_path: Path, bone: trimesh.Trimesh, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "other.ply"
    shifted = trimesh.Trimesh(
        np.asarray(bone.vertices) * [-1.0, 1.0, 1.0] + [0.4, 0.0, -0.3], np.asarray(bone.faces)[:, ::-1], process=False
    )
    target.write_bytes(export_mesh(shifted, "ply"))
    out_path = tmp_path / "mirrored.ply"
    out = run(
        [
            "mirror",
            str(bone_file),
            "--plane",
            "0,0,0,1,0,0",
            str(out_path),
            "--align-to",
            str(target),
            "--max-distance",
            "5",
        ],
        capsys,
    )
    alignment = out["report"]["alignment"]
    assert alignment["rms_after_mm"] < 0.01 < alignment["rms_before_mm"]
    assert _load(out_path).volume == pytest.approx(bone.volume, rel=1e-4)


def test_boolean_difference(bone_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tool = tmp_path / "tool.3mf"
    tool.write_bytes(export_mesh(sphere(9.0, (10.0, 0.0, 0.0)), "3mf"))
    out_path = tmp_path / "notched.3mf"
    out = run(["boolean", "difference", str(bone_file), str(tool), str(out_path)], capsys)
    assert out["report"]["result"]["volume_mm3"] < out["report"]["a"]["volume_mm3"]
    assert is_watertight(np.asarray(_load(out_path).faces))


def test_guide_from_the_command_line(bone_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_path = tmp_path / "guide.stl"
    region = json.dumps({"center_lps": [11.0, 0.0, 10.0], "radius_mm": 8.0})
    trajectories = [
        json.dumps({"entry_lps": [11.0, 0.0, 8.0], "target_lps": [0.0, 0.0, 8.0], "diameter_mm": 2.0}),
        json.dumps({"entry_lps": [10.8, 2.0, 13.0], "target_lps": [0.0, 0.0, 14.0], "diameter_mm": 1.6}),
    ]
    argv = [
        "guide",
        str(bone_file),
        "--region",
        region,
        "--trajectory",
        trajectories[0],
        "--trajectory",
        trajectories[1],
        str(out_path),
    ]
    label = ["--label", "r", "--label-at", "11,-3,12", "--label-height", "5"]
    out = run([*argv, "--resolution", "0.6", "--clearance", "0.25", *label], capsys)
    assert out["report"]["parameters"]["clearance_mm"] == 0.25
    assert out["report"]["label"]["text"] == "R" and out["report"]["guide"]["components"] == 1
    assert [s["inner_diameter_mm"] for s in out["report"]["sleeves"]] == [2.2, 1.8]
    assert is_watertight(np.asarray(_load(out_path).faces))


def test_repair_and_decimate_and_smooth_and_remesh(
    bone_file: Path, tmp_path: Path, bone: trimesh.Trimesh, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.ply"
    broken.write_bytes(export_mesh(trimesh.Trimesh(bone.vertices, np.asarray(bone.faces)[2:], process=False), "ply"))
    repaired = run(["repair", str(broken), str(tmp_path / "repaired.ply"), "--keep", "largest"], capsys)
    assert repaired["report"]["holes_filled"] == 1 and repaired["report"]["watertight_after"]
    decimated = run(["decimate", str(bone_file), "--faces", "4000", str(tmp_path / "small.glb")], capsys)
    assert decimated["outputs"][0]["faces"] <= 4000 and decimated["report"]["watertight_after"]
    smoothed = run(["smooth", str(bone_file), str(tmp_path / "smooth.ply"), "--iterations", "3"], capsys)
    assert smoothed["report"]["watertight_after"]
    remeshed = run(["remesh", str(tmp_path / "small.glb"), "--max-edge", "3", str(tmp_path / "fine.ply")], capsys)
    assert remeshed["report"]["max_edge_mm"] <= 3.0


def test_errors_surface_as_typed_exceptions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "garbage.stl"
    garbage.write_bytes(b"\x00\x01 not a mesh at all" * 10)
    with pytest.raises(MeshFormatError):
        run(["info", str(garbage)], capsys)
    with pytest.raises(UnsupportedMeshFormat):
        run(["info", str(tmp_path / "bone.vtk")], capsys)
