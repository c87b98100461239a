"""Meshes in and out: load STL (binary, ASCII), OBJ, PLY, GLB and 3MF from bytes within limits, and
export deterministic bytes (same mesh, same bytes).

Limits are checked before the full parse wherever the format tells the size up front: the binary STL
header's triangle count, the PLY header's face element, the GLB's accessors, the 3MF zip directory
(uncompressed sizes, against zip bombs) and a streamed count of its triangles. Every loaded mesh is
one `trimesh.Trimesh` built with process=False. STL stores each triangle's corners separately, so
exactly coincident vertices are welded to share edges; so are those of other formats unless their
indexed mesh is already closed (then a weld could only pinch surfaces that touch at a point).
"""

from __future__ import annotations

import io
import json
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np
import trimesh

from server.design.errors import MeshEmpty, MeshFormatError, MeshTooLarge, UnsupportedMeshFormat
from server.design.threemf import count_3mf_triangles
from server.design.topology import is_watertight
from server.imaging import mesh_files
from server.imaging.mesh import Mesh

FORMATS = ("stl", "obj", "ply", "glb", "3mf")
EXPORT_FORMATS = ("stl", "ply", "glb", "3mf")
MEDIA_TYPES = {
    "stl": "model/stl",
    "obj": "model/obj",
    "ply": "application/x-ply",  # no registered type
    "glb": "model/gltf-binary",
    "3mf": "model/3mf",
}


@dataclass(frozen=True)
class MeshLimits:
    max_bytes: int = 512 * 1024 * 1024
    max_faces: int = 5_000_000
    max_uncompressed_bytes: int = 2 * 1024 * 1024 * 1024  # inside a 3MF zip

    def check_size(self, n_bytes: int) -> None:
        """The edge can call this with a Content-Length before reading the body."""
        if n_bytes > self.max_bytes:
            raise MeshTooLarge(f"{n_bytes} bytes is over the limit of {self.max_bytes}", limit_bytes=self.max_bytes)

    def check_faces(self, n_faces: int, what: str = "the mesh") -> None:
        if n_faces > self.max_faces:
            raise MeshTooLarge(
                f"{what} has {n_faces} triangles, over the limit of {self.max_faces}", limit_faces=self.max_faces
            )


@dataclass
class MeshResult:
    """What an operation returns: named output meshes and a JSON-able report."""

    meshes: dict[str, trimesh.Trimesh]
    report: dict[str, Any] = field(default_factory=dict)


def make_mesh(vertices: np.ndarray, faces: np.ndarray) -> trimesh.Trimesh:
    """A Trimesh taken as is: trimesh's processing would merge vertices and may break manifoldness."""
    return trimesh.Trimesh(
        vertices=np.asarray(vertices, dtype=np.float64),
        faces=np.asarray(faces, dtype=np.int64),
        process=False,
        validate=False,
    )


def format_from_name(filename: str) -> str:
    suffix = PurePath(filename).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise UnsupportedMeshFormat(f"{filename!r}: not one of {', '.join(FORMATS)}", filename=filename)
    return suffix


def sniff_format(data: bytes) -> str | None:
    """The format the content itself declares, where it has a signature (OBJ has none)."""
    if data[:4] == b"glTF":
        return "glb"
    if data[:4] == b"PK\x03\x04":
        return "3mf"
    if data[:4] in (b"ply\n", b"ply\r"):
        return "ply"
    if len(data) >= 84 and len(data) == 84 + 50 * struct.unpack_from("<I", data, 80)[0]:
        return "stl"
    if data.lstrip()[:5].lower() == b"solid":
        return "stl"
    return None


def load_mesh(data: bytes, fmt: str, limits: MeshLimits | None = None) -> trimesh.Trimesh:
    """Parse `data` as `fmt` into one mesh, or raise a typed error that says what is wrong."""
    limits = limits or MeshLimits()
    fmt = fmt.lower().lstrip(".")
    if fmt not in FORMATS:
        raise UnsupportedMeshFormat(f"format {fmt!r}: not one of {', '.join(FORMATS)}", format=fmt)
    limits.check_size(len(data))
    if not data.strip():
        raise MeshEmpty("the file is empty", format=fmt)
    sniffed = sniff_format(data)
    if sniffed is not None and sniffed != fmt:
        raise MeshFormatError(f"the content is {sniffed.upper()}, not {fmt.upper()}", format=fmt, content=sniffed)
    file_type, declared = _PRECHECKS[fmt](data, limits)
    try:
        loaded = trimesh.load(io.BytesIO(data), file_type=file_type, process=False)
    except Exception as exc:  # trimesh's loaders raise anything from ValueError to KeyError on bad input
        raise MeshFormatError(f"not a readable {fmt.upper()} file: {exc}", format=fmt) from None
    vertices, faces = _triangles_of(loaded, fmt, declared)
    limits.check_faces(len(faces))
    if not np.isfinite(vertices).all():
        raise MeshFormatError("the file has non-finite vertex coordinates", format=fmt)
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise MeshFormatError("a triangle refers to a vertex that does not exist", format=fmt)
    if fmt != "stl" and is_watertight(faces):
        # indexed and already closed: welding could only merge vertices that touch without sharing
        # an edge (letters meeting at a corner), which would make the solid non-manifold
        return make_mesh(*_drop_unreferenced(vertices, faces))
    vertices, faces = weld(vertices, faces)
    # corners that welded together (an edge shorter than float32 resolution): no area, no orientation
    collapsed = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 2] == faces[:, 0])
    if collapsed.all():
        raise MeshEmpty(f"every triangle of the {fmt.upper()} file has collapsed corners", format=fmt)
    if collapsed.any():
        vertices, faces = _drop_unreferenced(vertices, faces[~collapsed])
    return make_mesh(vertices, faces)


def _drop_unreferenced(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    used = np.zeros(len(vertices), dtype=bool)
    used[faces.ravel()] = True  # a mask, not np.unique: linear time on millions of corners
    index = np.cumsum(used) - 1
    return vertices[used], index[faces]


def weld(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge exactly coincident vertices (keeps first-seen order, so the result is deterministic) and drop
    unreferenced ones."""
    vertices, faces = _drop_unreferenced(vertices, faces)
    order = np.lexsort(vertices.T[::-1])
    ordered = vertices[order]
    new = np.ones(len(ordered), dtype=bool)
    new[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    group = np.cumsum(new) - 1
    # number groups by their first vertex in the original order
    first = np.full(int(group[-1]) + 1 if len(group) else 0, len(order), dtype=np.int64)
    np.minimum.at(first, group, order)
    rank = np.empty_like(first)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    index = np.empty(len(order), dtype=np.int64)
    index[order] = rank[group]
    welded = np.empty((len(first), 3), dtype=np.float64)
    welded[rank] = vertices[first]
    return welded, index[faces]


def _triangles_of(loaded: Any, fmt: str, declared: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(loaded, trimesh.Scene):
        parts = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh) and len(g.faces)]
        loaded = trimesh.util.concatenate(parts) if parts else None
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        # the precheck found triangles, the parser none: the file is broken, not empty
        raise MeshFormatError(
            f"none of the {declared} triangles the {fmt.upper()} file declares can be read", format=fmt
        )
    return np.asarray(loaded.vertices, dtype=np.float64), np.asarray(loaded.faces, dtype=np.int64)


# --- prechecks: cheap looks at the bytes that bound the size before trimesh parses everything ---------


def _precheck_stl(data: bytes, limits: MeshLimits) -> tuple[str, int]:
    claimed = struct.unpack_from("<I", data, 80)[0] if len(data) >= 84 else None
    if claimed is not None and len(data) == 84 + 50 * claimed:
        if claimed == 0:
            raise MeshEmpty("the binary STL has no triangles", format="stl")
        limits.check_faces(claimed, "the binary STL header")
        return "stl", claimed
    head = data[:4096].lstrip().lower()
    if head.startswith(b"solid") and (b"facet" in head or b"endsolid" in head):
        facets = data.count(b"endfacet")
        if facets == 0:
            raise MeshEmpty("the ASCII STL has no facets", format="stl")
        limits.check_faces(facets, "the ASCII STL")
        return "stl_ascii", facets
    if claimed is None:
        raise MeshFormatError(f"not an STL file: {len(data)} bytes is shorter than a binary STL header", format="stl")
    raise MeshFormatError(
        f"not an STL file, or a truncated one: the binary header claims {claimed} triangles "
        f"({84 + 50 * claimed} bytes), the file has {len(data)} bytes",
        format="stl",
        claimed_faces=claimed,
        size_bytes=len(data),
    )


def _precheck_obj(data: bytes, limits: MeshLimits) -> tuple[str, int]:
    faces = data.count(b"\nf ") + data.startswith(b"f ")
    if faces == 0:
        raise MeshEmpty("the OBJ file has no faces", format="obj")
    limits.check_faces(faces, "the OBJ file")
    return "obj", faces


_PLY_FACES = re.compile(rb"^element\s+face\s+(\d+)\s*$", re.MULTILINE)


def _precheck_ply(data: bytes, limits: MeshLimits) -> tuple[str, int]:
    end = data.find(b"end_header")
    if end < 0:
        raise MeshFormatError("PLY header has no end_header", format="ply")
    match = _PLY_FACES.search(data[:end].replace(b"\r\n", b"\n"))
    if not match or int(match.group(1)) == 0:
        raise MeshEmpty("the PLY file has no faces", format="ply")
    limits.check_faces(int(match.group(1)), "the PLY header")
    return "ply", int(match.group(1))


def _precheck_glb(data: bytes, limits: MeshLimits) -> tuple[str, int]:
    if len(data) < 20:
        raise MeshFormatError("GLB shorter than its header", format="glb")
    _magic, version, length = struct.unpack_from("<4sII", data, 0)
    chunk_length, chunk_type = struct.unpack_from("<II", data, 12)
    if version != 2 or length > len(data) or chunk_type != 0x4E4F534A or 20 + chunk_length > len(data):
        raise MeshFormatError("GLB header is inconsistent (version, length or JSON chunk)", format="glb")
    try:
        gltf = json.loads(data[20 : 20 + chunk_length])
        accessors = gltf.get("accessors", [])
        triangles = 0
        for mesh in gltf.get("meshes", []):
            for primitive in mesh.get("primitives", []):
                if primitive.get("mode", 4) != 4:  # points, lines, strips: no solid triangles
                    continue
                source = primitive.get("indices", primitive.get("attributes", {}).get("POSITION"))
                if source is not None:
                    triangles += int(accessors[source]["count"]) // 3
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise MeshFormatError("GLB JSON chunk is not valid glTF", format="glb") from None
    if triangles == 0:
        raise MeshEmpty("the GLB holds no triangle mesh", format="glb")
    limits.check_faces(triangles, "the GLB")
    return "glb", triangles


def _precheck_3mf(data: bytes, limits: MeshLimits) -> tuple[str, int]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise MeshFormatError("3MF is not a readable zip archive", format="3mf") from None
    with archive:
        total = sum(info.file_size for info in archive.infolist())
        if total > limits.max_uncompressed_bytes:
            raise MeshTooLarge(
                f"3MF unpacks to {total} bytes, over the limit of {limits.max_uncompressed_bytes}",
                limit_bytes=limits.max_uncompressed_bytes,
            )
        try:
            triangles = count_3mf_triangles(archive)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise MeshFormatError(f"3MF archive is damaged: {exc}", format="3mf") from None
    if triangles == 0:
        raise MeshEmpty("the 3MF holds no triangles", format="3mf")
    limits.check_faces(triangles, "the 3MF")
    return "3mf", triangles


_PRECHECKS = {
    "stl": _precheck_stl,
    "obj": _precheck_obj,
    "ply": _precheck_ply,
    "glb": _precheck_glb,
    "3mf": _precheck_3mf,
}


# --- export --------------------------------------------------------------------------------------------


def export_mesh(mesh: trimesh.Trimesh, fmt: str) -> bytes:
    """Deterministic bytes of `mesh` in `fmt`. PLY (doubles) and 3MF keep float64 coordinates exactly;
    STL and GLB store float32, and vertices closer than float32 resolution (boolean results have them)
    collapse when read back, which can make the mesh non-manifold: keep working copies in PLY."""
    fmt = fmt.lower().lstrip(".")
    if fmt == "ply":
        return export_ply(np.asarray(mesh.vertices), np.asarray(mesh.faces))
    if fmt in ("stl", "glb", "3mf"):  # one writer for the whole project, with the LPS mm frame recorded
        as_mesh = Mesh(np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int32))
        return {"stl": mesh_files.to_stl, "glb": mesh_files.to_glb, "3mf": mesh_files.to_3mf}[fmt](
            as_mesh, "trinity design"
        )
    raise UnsupportedMeshFormat(f"cannot export {fmt!r}: one of {', '.join(EXPORT_FORMATS)}", format=fmt)


_PLY_FACE = np.dtype([("count", "u1"), ("corners", "<i4", 3)])


def export_ply(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    """Binary little-endian PLY with double coordinates: reads back bit for bit."""
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment Trinity, patient LPS millimetres\n"
        f"element vertex {len(vertices)}\nproperty double x\nproperty double y\nproperty double z\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    records = np.empty(len(faces), dtype=_PLY_FACE)
    records["count"] = 3
    records["corners"] = faces
    return header.encode() + np.ascontiguousarray(vertices, dtype="<f8").tobytes() + records.tobytes()
