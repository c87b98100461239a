"""Design failures, one type each, with a stable `code` and the HTTP status the app maps them to.

They derive from `server.core.errors.TrinityError` (plain Python, no framework), so the app's one
error handler answers them like every other domain error; a job reports `code` and `details`.
"""

from __future__ import annotations

from server.core.errors import TrinityError


class DesignError(TrinityError):
    status = 422
    code = "design_error"


class MeshFormatError(DesignError):
    """The bytes are not a readable mesh of the declared format (garbage, truncated, wrong extension)."""

    code = "mesh_format"


class UnsupportedMeshFormat(DesignError):
    status = 415
    code = "mesh_format_unsupported"


class MeshTooLarge(DesignError):
    """Over the byte or face limit; raised before the full parse where the format allows."""

    status = 413
    code = "mesh_too_large"


class MeshEmpty(DesignError):
    """No triangles (an empty file, a GLB of points or cameras only)."""

    code = "mesh_empty"


class MeshNotWatertight(DesignError):
    """Open, non-manifold or inconsistently wound where a closed solid is needed."""

    code = "mesh_not_watertight"


class MeshNotManifold(DesignError):
    """manifold3d refused the mesh (it would otherwise return an empty result without an error)."""

    code = "mesh_not_manifold"


class MeshInsideOut(DesignError):
    """Closed but with inward normals (negative volume): repair it first."""

    code = "mesh_inside_out"


class InvalidDesignParameters(DesignError):
    code = "invalid_parameters"


class EmptyResult(DesignError):
    """The operation left nothing (a plane that misses the mesh, disjoint intersection)."""

    code = "empty_result"


class UnknownOperation(DesignError):
    status = 404
    code = "unknown_operation"
