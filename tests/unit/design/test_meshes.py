"""Loading meshes from bytes within limits, with typed errors; deterministic export."""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np
import pytest
import trimesh

from server.design.errors import MeshEmpty, MeshFormatError, MeshTooLarge, UnsupportedMeshFormat
from server.design.meshes import MeshLimits, export_mesh, format_from_name, load_mesh, make_mesh
from server.design.topology import is_watertight
from tests.unit.design.shapes import sphere


@pytest.fixture(scope="module")
def ball() -> trimesh.Trimesh:
    return sphere(10.0, (5.0, -3.0, 100.0), subdivisions=2)


@pytest.mark.parametrize("fmt", ["stl", "ply", "glb", "3mf"])
def test_every_export_format_reads_back_as_the_same_closed_mesh(ball: trimesh.Trimesh, fmt: str) -> None:
    data = export_mesh(ball, fmt)
    loaded = load_mesh(data, fmt)
    assert len(loaded.faces) == len(ball.faces)
    assert len(loaded.vertices) == len(ball.vertices)  # STL's separate corners are welded again
    assert is_watertight(np.asarray(loaded.faces))
    assert loaded.volume == pytest.approx(ball.volume, rel=1e-6)
    assert export_mesh(ball, fmt) == data  # same mesh, same bytes


def test_ply_and_3mf_keep_float64_coordinates_exactly(ball: trimesh.Trimesh) -> None:
    moved = ball.copy()
    moved.vertices = np.asarray(ball.vertices) + 1e-9  # not representable in float32
    for fmt in ("ply", "3mf"):
        assert np.array_equal(load_mesh(export_mesh(moved, fmt), fmt).vertices, moved.vertices)


def test_ascii_stl_and_obj_load(ball: trimesh.Trimesh) -> None:
    ascii_stl = trimesh.exchange.stl.export_stl_ascii(ball).encode()
    obj = ball.export(file_type="obj").encode()
    for data, fmt in ((ascii_stl, "stl"), (obj, "obj")):
        loaded = load_mesh(data, fmt)
        assert len(loaded.faces) == len(ball.faces)
        assert is_watertight(np.asarray(loaded.faces))


def _binary_stl(faces: int, claimed: int | None = None) -> bytes:
    header = b"test".ljust(80, b" ") + struct.pack("<I", faces if claimed is None else claimed)
    rng = np.random.default_rng(1)
    records = np.zeros(faces, dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
    records["v"] = rng.random((faces, 3, 3))
    return header + records.tobytes()


def test_truncated_binary_stl_is_a_format_error() -> None:
    data = _binary_stl(100)[:-20]
    with pytest.raises(MeshFormatError) as caught:
        load_mesh(data, "stl")
    assert caught.value.code == "mesh_format"
    assert "100 triangles" in caught.value.message


def test_header_claiming_ten_million_faces_is_refused_before_parsing() -> None:
    data = _binary_stl(10, claimed=10_000_000)
    with pytest.raises(MeshFormatError) as caught:
        load_mesh(data, "stl")
    assert caught.value.details["claimed_faces"] == 10_000_000


def test_more_faces_than_the_limit_is_too_large_from_the_header() -> None:
    with pytest.raises(MeshTooLarge) as caught:
        load_mesh(_binary_stl(2000), "stl", MeshLimits(max_faces=1000))
    assert caught.value.status == 413
    assert caught.value.code == "mesh_too_large"


def test_more_bytes_than_the_limit_is_too_large(ball: trimesh.Trimesh) -> None:
    with pytest.raises(MeshTooLarge):
        load_mesh(export_mesh(ball, "stl"), "stl", MeshLimits(max_bytes=1000))


@pytest.mark.parametrize("fmt", ["stl", "obj", "ply", "glb", "3mf"])
def test_garbage_bytes_are_a_format_error(fmt: str) -> None:
    garbage = np.random.default_rng(7).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    with pytest.raises((MeshFormatError, MeshEmpty)):
        load_mesh(garbage, fmt)


@pytest.mark.parametrize("fmt", ["stl", "obj", "ply", "glb", "3mf"])
def test_an_empty_file_is_empty(fmt: str) -> None:
    with pytest.raises(MeshEmpty) as caught:
        load_mesh(b"", fmt)
    assert caught.value.code == "mesh_empty"


def test_glb_without_triangles_is_empty() -> None:
    points = trimesh.Scene(trimesh.PointCloud(np.random.default_rng(2).random((20, 3))))
    with pytest.raises(MeshEmpty):
        load_mesh(points.export(file_type="glb"), "glb")


def test_content_of_another_format_is_named_in_the_error(ball: trimesh.Trimesh) -> None:
    with pytest.raises(MeshFormatError) as caught:
        load_mesh(export_mesh(ball, "glb"), "stl")
    assert caught.value.details == {"format": "stl", "content": "glb"}


def test_unknown_extension_is_unsupported() -> None:
    with pytest.raises(UnsupportedMeshFormat) as caught:
        format_from_name("bone.vtk")
    assert caught.value.status == 415


def test_3mf_that_unpacks_beyond_the_limit_is_refused_before_parsing() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("3D/3dmodel.model", b" " * 5_000_000)  # compresses to a few kB
    with pytest.raises(MeshTooLarge):
        load_mesh(out.getvalue(), "3mf", MeshLimits(max_uncompressed_bytes=1_000_000))


def test_3mf_triangle_count_is_checked_against_the_limit(ball: trimesh.Trimesh) -> None:
    data = export_mesh(ball, "3mf")
    with pytest.raises(MeshTooLarge):
        load_mesh(data, "3mf", MeshLimits(max_faces=len(ball.faces) - 1))


def test_ply_header_face_count_is_checked_against_the_limit(ball: trimesh.Trimesh) -> None:
    with pytest.raises(MeshTooLarge):
        load_mesh(export_mesh(ball, "ply"), "ply", MeshLimits(max_faces=10))


def test_an_edge_shorter_than_float32_collapses_cleanly_when_an_stl_is_read() -> None:
    """Split an edge 1e-7 of its length from one end: the STL's float32 corners weld that vertex away,
    its two sliver faces collapse, and the mesh reads back closed."""
    ball = sphere(10.0, (100.0, 100.0, 100.0), subdivisions=2)  # float32 steps of ~8e-6 mm out here
    # float32-exact corners, so the new vertex (within half a float32 step of `a`) rounds onto `a`
    vertices, faces = np.asarray(ball.vertices).astype(np.float32).astype(np.float64), np.asarray(ball.faces)
    a, b, c = faces[0]
    other = next(i for i in np.flatnonzero(np.isin(faces, [a, b]).sum(axis=1) == 2) if i != 0)
    d = next(v for v in faces[other] if v not in (a, b))
    k = len(vertices)
    split = np.vstack([np.delete(faces, [0, other], axis=0), [[a, k, c], [k, b, c], [b, k, d], [k, a, d]]])
    mesh = make_mesh(np.vstack([vertices, vertices[a] + (vertices[b] - vertices[a]) * 1e-7]), split)
    assert is_watertight(split)
    loaded = load_mesh(export_mesh(mesh, "stl"), "stl")
    assert len(loaded.faces) == len(faces) and is_watertight(np.asarray(loaded.faces))
