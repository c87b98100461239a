"""Geometric parameters of design operations, as the room stores them (patient LPS mm).

Each type parses from JSON-able values (`from_json`, raising InvalidDesignParameters that names the
field) and writes back its normalized form (`to_json`): defaults filled in, numbers as floats, normals
of unit length. The normalized form is what provenance records and what the operation used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from server.design.errors import InvalidDesignParameters

Vec3 = tuple[float, float, float]


def vec3(value: Any, field: str) -> Vec3:
    """Three finite numbers, from a list or a "x,y,z" string."""
    if isinstance(value, str):
        value = value.split(",")
    try:
        x, y, z = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidDesignParameters(f"{field}: expected three numbers, got {value!r}", field=field) from None
    if not all(math.isfinite(v) for v in (x, y, z)):
        raise InvalidDesignParameters(f"{field}: numbers must be finite", field=field)
    return (x, y, z)


def unit(value: Any, field: str) -> Vec3:
    x, y, z = vec3(value, field)
    length = math.sqrt(x * x + y * y + z * z)
    if length < 1e-12:
        raise InvalidDesignParameters(f"{field}: a direction of zero length", field=field)
    return (x / length, y / length, z / length)


def positive(value: Any, field: str, *, allow_zero: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidDesignParameters(f"{field}: expected a number, got {value!r}", field=field) from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise InvalidDesignParameters(f"{field}: must be {'≥' if allow_zero else '>'} 0, got {value!r}", field=field)
    return number


def mapping(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidDesignParameters(f"{field}: expected an object, got {type(value).__name__}", field=field)
    return value


@dataclass(frozen=True)
class Plane:
    """A cutting or mirror plane: a point on it and its unit normal. For a cut, the normal points to
    the `positive` piece; for a wedge, both normals point into the wedge."""

    point_lps: Vec3
    normal_lps: Vec3

    def __post_init__(self) -> None:
        object.__setattr__(self, "point_lps", vec3(self.point_lps, "plane.point_lps"))
        object.__setattr__(self, "normal_lps", unit(self.normal_lps, "plane.normal_lps"))

    @classmethod
    def from_json(cls, value: Any, field: str = "plane") -> Plane:
        if isinstance(value, str):  # the command line's X,Y,Z,NX,NY,NZ
            parts = value.split(",")
            if len(parts) != 6:
                raise InvalidDesignParameters(f"{field}: expected X,Y,Z,NX,NY,NZ, got {value!r}", field=field)
            return cls(vec3(parts[:3], field), unit(parts[3:], field))
        value = mapping(value, field)
        return cls(
            vec3(value.get("point_lps"), f"{field}.point_lps"), unit(value.get("normal_lps"), f"{field}.normal_lps")
        )

    def to_json(self) -> dict[str, Any]:
        return {"point_lps": list(self.point_lps), "normal_lps": list(self.normal_lps)}

    @property
    def offset_mm(self) -> float:
        """Signed distance of the plane from the origin along the normal (manifold3d's convention)."""
        return float(np.dot(self.point_lps, self.normal_lps))


@dataclass(frozen=True)
class Trajectory:
    """A planned drill path: it enters the bone at `entry_lps` and heads for `target_lps`."""

    entry_lps: Vec3
    target_lps: Vec3
    diameter_mm: float

    @classmethod
    def from_json(cls, value: Any, field: str = "trajectory") -> Trajectory:
        value = mapping(value, field)
        entry = vec3(value.get("entry_lps"), f"{field}.entry_lps")
        target = vec3(value.get("target_lps"), f"{field}.target_lps")
        if np.linalg.norm(np.subtract(target, entry)) < 1e-6:
            raise InvalidDesignParameters(f"{field}: entry and target coincide", field=field)
        return cls(entry, target, positive(value.get("diameter_mm"), f"{field}.diameter_mm"))

    def to_json(self) -> dict[str, Any]:
        return {"entry_lps": list(self.entry_lps), "target_lps": list(self.target_lps), "diameter_mm": self.diameter_mm}

    @property
    def direction(self) -> np.ndarray:
        """Unit vector from entry towards target (into the bone)."""
        d = np.subtract(self.target_lps, self.entry_lps)
        return d / np.linalg.norm(d)


@dataclass(frozen=True)
class SphereRegion:
    """The bone surface within `radius_mm` of `center_lps` (the connected patch nearest the centre)."""

    center_lps: Vec3
    radius_mm: float

    def to_json(self) -> dict[str, Any]:
        return {"kind": "sphere", "center_lps": list(self.center_lps), "radius_mm": self.radius_mm}


@dataclass(frozen=True)
class LassoRegion:
    """The bone surface visible inside a closed polygon drawn on the screen: the polygon's LPS points
    are projected along `view_direction_lps` (from the eye into the scene)."""

    points_lps: tuple[Vec3, ...]
    view_direction_lps: Vec3

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "lasso",
            "points_lps": [list(p) for p in self.points_lps],
            "view_direction_lps": list(self.view_direction_lps),
        }


Region = SphereRegion | LassoRegion


def region_from_json(value: Any, field: str = "region") -> Region:
    value = mapping(value, field)
    kind = value.get("kind", "sphere" if "center_lps" in value else "lasso")
    if kind == "sphere":
        return SphereRegion(
            vec3(value.get("center_lps"), f"{field}.center_lps"), positive(value.get("radius_mm"), f"{field}.radius_mm")
        )
    if kind == "lasso":
        raw = value.get("points_lps")
        if not isinstance(raw, Sequence) or isinstance(raw, str) or len(raw) < 3:
            raise InvalidDesignParameters(f"{field}.points_lps: a polygon needs at least three points", field=field)
        points = tuple(vec3(p, f"{field}.points_lps[{i}]") for i, p in enumerate(raw))
        return LassoRegion(points, unit(value.get("view_direction_lps"), f"{field}.view_direction_lps"))
    raise InvalidDesignParameters(f"{field}.kind: expected 'sphere' or 'lasso', got {kind!r}", field=field)
