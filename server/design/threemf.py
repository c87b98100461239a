"""3MF without surprises: a streamed triangle count, to refuse big files before parsing them (the
writer is server/imaging/mesh_files.to_3mf, whose bytes depend only on the mesh)."""

from __future__ import annotations

import re
import zipfile

_TRIANGLE = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?triangle[\s/>]")
_KEEP = 64  # longer than any match, so a match cut by a chunk boundary is counted in the next chunk


def count_3mf_triangles(archive: zipfile.ZipFile) -> int:
    """Triangles in every model part, counted in 1 MiB chunks of the decompressed stream."""
    total = 0
    for info in archive.infolist():
        if not info.filename.lower().endswith(".model"):
            continue
        with archive.open(info) as stream:
            tail = b""
            while chunk := stream.read(1 << 20):
                buffer = tail + chunk
                cut = max(len(buffer) - _KEEP, 0)
                total += sum(1 for m in _TRIANGLE.finditer(buffer) if m.start() < cut)
                tail = buffer[cut:]
            total += sum(1 for _ in _TRIANGLE.finditer(tail))
    return total
