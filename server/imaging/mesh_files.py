"""Surface files: GLB for the browser, binary STL and 3MF for printing. Same mesh, same bytes.

Every file keeps the mesh in patient LPS millimetres (x to the patient's left, y posterior,
z superior), as 3D Slicer writes STL since 4.11:
- GLB: glTF's convention is metres with +Y up; Trinity's GLB is NOT converted. The frame is recorded
  in `asset.extras` and the node's `extras` (`{"units": "mm", "frame": "LPS"}`) and in the node's
  name; the web client scales by 0.001 and turns +Z (superior) up itself if it wants glTF's frame.
- STL: the 80-byte header starts with "SPACE=LPS UNITS=mm".
- 3MF: `unit="millimeter"`; 3MF's +Z is up, as LPS's superior.
"""

from __future__ import annotations

import json
import struct
import zipfile
from io import BytesIO

import numpy as np

from server.imaging.mesh import Mesh

FRAME_EXTRAS = {"units": "mm", "frame": "LPS", "axes": "x=patient left, y=posterior, z=superior"}
BONE_RGBA = [0.89, 0.85, 0.79, 1.0]
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed entry times: the same mesh gives the same 3MF bytes


def face_normals(mesh: Mesh) -> np.ndarray:
    v, f = mesh.vertices_lps, mesh.faces
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, length, out=np.zeros_like(n), where=length > 0)


def vertex_normals(mesh: Mesh) -> np.ndarray:
    """Area-weighted unit normals; a vertex with no area gets +z (glTF needs unit normals)."""
    v, f = mesh.vertices_lps, mesh.faces
    weighted = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # length = 2 x area
    sums = np.zeros_like(v)
    for corner in range(3):
        for axis in range(3):
            sums[:, axis] += np.bincount(f[:, corner], weights=weighted[:, axis], minlength=len(v))
    length = np.linalg.norm(sums, axis=1, keepdims=True)
    normals = np.divide(sums, length, out=np.zeros_like(sums), where=length > 0)
    normals[length[:, 0] == 0] = (0.0, 0.0, 1.0)
    return normals


def to_stl(mesh: Mesh, name: str = "trinity surface") -> bytes:
    """Binary STL, float32 LPS mm, normals from the counter-clockwise winding."""
    header = f"SPACE=LPS UNITS=mm {name}".encode("ascii", "replace")[:80].ljust(80, b" ")
    record = np.dtype([("normal", "<f4", (3,)), ("corners", "<f4", (3, 3)), ("attribute", "<u2")])
    rows = np.zeros(len(mesh.faces), dtype=record)
    rows["normal"] = face_normals(mesh)
    rows["corners"] = mesh.vertices_lps[mesh.faces]
    return header + struct.pack("<I", len(rows)) + rows.tobytes()


def to_glb(mesh: Mesh, name: str = "surface") -> bytes:
    """Binary glTF 2.0: one node, one triangle primitive (POSITION, NORMAL, uint32 indices)."""
    positions = np.ascontiguousarray(mesh.vertices_lps, dtype="<f4")
    normals = np.ascontiguousarray(vertex_normals(mesh), dtype="<f4")
    indices = np.ascontiguousarray(mesh.faces, dtype="<u4")
    blobs = [positions.tobytes(), normals.tobytes(), indices.tobytes()]  # each a multiple of 4 bytes
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    views = [
        {"buffer": 0, "byteOffset": int(offsets[i]), "byteLength": len(blobs[i]), "target": target}
        for i, target in enumerate((34962, 34962, 34963))
    ]
    extras = {**FRAME_EXTRAS, "name": name}
    gltf = {
        "asset": {"version": "2.0", "generator": "Trinity", "extras": extras},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": f"{name} (LPS mm)", "extras": extras}],
        "meshes": [
            {
                "name": name,
                "primitives": [{"attributes": {"POSITION": 0, "NORMAL": 1}, "indices": 2, "material": 0, "mode": 4}],
            }
        ],
        "materials": [
            {
                "name": "bone",
                "pbrMetallicRoughness": {"baseColorFactor": BONE_RGBA, "metallicFactor": 0.0, "roughnessFactor": 0.8},
            }
        ],
        "buffers": [{"byteLength": int(offsets[-1])}],
        "bufferViews": views,
        "accessors": [
            {
                "bufferView": 0,
                "componentType": 5126,
                "count": len(positions),
                "type": "VEC3",
                "min": [float(x) for x in positions.min(axis=0)],
                "max": [float(x) for x in positions.max(axis=0)],
            },
            {"bufferView": 1, "componentType": 5126, "count": len(normals), "type": "VEC3"},
            {"bufferView": 2, "componentType": 5125, "count": int(indices.size), "type": "SCALAR"},
        ],
    }
    text = json.dumps(gltf, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    binary = b"".join(blobs)
    binary += b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join(
        [
            struct.pack("<4sII", b"glTF", 2, total),
            struct.pack("<I4s", len(text), b"JSON"),
            text,
            struct.pack("<I4s", len(binary), b"BIN\0"),
            binary,
        ]
    )


_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="model" ContentType="application/vnd.ms-package.3dmanufacturing-3dmodel+xml"/>'
    "</Types>"
)
_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Target="/3D/3dmodel.model" Id="rel0" '
    'Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/>'
    "</Relationships>"
)


def to_3mf(mesh: Mesh, name: str = "surface") -> bytes:
    """3MF core package, unit millimetre, coordinates in LPS mm, exact."""
    title = name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    # repr: the shortest text that reads back to the same double, so a 3MF reloads bit for bit
    vertices = "".join(f'<vertex x="{x!r}" y="{y!r}" z="{z!r}"/>' for x, y, z in mesh.vertices_lps.tolist())
    triangles = "".join(f'<triangle v1="{a}" v2="{b}" v3="{c}"/>' for a, b, c in mesh.faces.tolist())
    model = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<model unit="millimeter" xml:lang="en-US" '
        'xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02">'
        f'<metadata name="Title">{title}</metadata>'
        '<metadata name="Application">Trinity (patient LPS mm)</metadata>'
        f'<resources><object id="1" type="model" name="{title}"><mesh>'
        f"<vertices>{vertices}</vertices><triangles>{triangles}</triangles>"
        '</mesh></object></resources><build><item objectid="1"/></build></model>'
    )
    out = BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for path, text in (
            ("[Content_Types].xml", _CONTENT_TYPES),
            ("_rels/.rels", _RELS),
            ("3D/3dmodel.model", model),
        ):
            entry = zipfile.ZipInfo(path, date_time=_ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.create_system = 0
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, text.encode("utf-8"), compresslevel=6)
    return out.getvalue()
