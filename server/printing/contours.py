"""Layer-contour stacks: the part cut into layers, each layer's outline as polygons with holes.

Metal (SLM/DMLS), ceramic and bio printers take their vendors' build files, whose processors are not
available here, so Trinity hands them (and the operator) a portable stack of contours instead, and
the simulator draws its camera image from the same sections.

JSON format `trinity-layers/1` (compact: coordinates as integers of `quantum_mm`):

    {"format": "trinity-layers/1", "quantum_mm": 0.01, "layer_mm": 0.03,
     "bounds_mm": [[xmin, ymin, zmin], [xmax, ymax, zmax]],
     "layers": [[z_q, [[outer ring x0,y0,x1,y1,...], [hole ring ...]], [next polygon ...]], ...]}

Each layer is cut at its mid height (`z_q` in quanta, from the build plate); rings are not repeated
at their end. Empty layers (gaps between parts) keep their slot with no polygons. Pure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import shapely
import trimesh
from shapely.geometry import Polygon

FORMAT = "trinity-layers/1"
QUANTUM_MM = 0.01
SIMPLIFY_MM = 0.02  # well under any of these printers' resolution


@dataclass(frozen=True)
class LayerStack:
    layer_mm: float
    z_mm: tuple[float, ...]  # each layer's cutting height (mid-layer)
    layers: tuple[tuple[Polygon, ...], ...]
    bounds_mm: tuple[tuple[float, float, float], tuple[float, float, float]]

    def areas_mm2(self) -> list[float]:
        return [float(sum(p.area for p in polygons)) for polygons in self.layers]

    def to_json(self) -> bytes:
        layers = [[_q(z), [_rings(p) for p in polygons]] for z, polygons in zip(self.z_mm, self.layers, strict=True)]
        document = {
            "format": FORMAT,
            "quantum_mm": QUANTUM_MM,
            "layer_mm": self.layer_mm,
            "bounds_mm": [list(self.bounds_mm[0]), list(self.bounds_mm[1])],
            "layers": layers,
        }
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> LayerStack:
        document = json.loads(data)
        if document.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} document")
        quantum = float(document["quantum_mm"])
        z_mm, layers = [], []
        for z_q, polygons in document["layers"]:
            z_mm.append(z_q * quantum)
            layers.append(tuple(_polygon(rings, quantum) for rings in polygons))
        low, high = (np.asarray(v, dtype=np.float64) for v in document["bounds_mm"])
        return cls(float(document["layer_mm"]), tuple(z_mm), tuple(layers), (_point(low), _point(high)))


def layer_stack(mesh: trimesh.Trimesh, layer_mm: float, *, simplify_mm: float = SIMPLIFY_MM) -> LayerStack:
    """Cut the part (as placed on the plate: z up) at every layer's mid height from its lowest point."""
    bounds = np.asarray(mesh.bounds, dtype=np.float64)
    z0, height = float(bounds[0, 2]), float(bounds[1, 2] - bounds[0, 2])
    count = max(1, int(np.ceil(height / layer_mm - 1e-9)))
    heights = (np.arange(count) + 0.5) * layer_mm
    sections = mesh.section_multiplane(plane_origin=[0.0, 0.0, z0], plane_normal=[0.0, 0.0, 1.0], heights=heights)
    return LayerStack(
        layer_mm,
        tuple(float(z0 + h) for h in heights),
        tuple(_polygons(section, simplify_mm) for section in sections),
        (_point(bounds[0]), _point(bounds[1])),
    )


def section_at(mesh: trimesh.Trimesh, z_mm: float, *, simplify_mm: float = SIMPLIFY_MM) -> tuple[Polygon, ...]:
    """The part's outline at one height on the plate (empty above or below it)."""
    (section,) = mesh.section_multiplane(plane_origin=[0.0, 0.0, 0.0], plane_normal=[0.0, 0.0, 1.0], heights=[z_mm])
    return _polygons(section, simplify_mm)


def _polygons(section: trimesh.path.Path2D | None, simplify_mm: float) -> tuple[Polygon, ...]:
    if section is None:
        return ()
    to_3d = np.asarray(section.metadata.get("to_3D", np.eye(4)))
    polygons = []
    for polygon in section.polygons_full:
        if not np.allclose(to_3d[:2, :2], np.eye(2)) or np.any(to_3d[:2, 3]):  # back to the plate's x, y
            polygon = shapely.transform(polygon, lambda xy: xy @ to_3d[:2, :2].T + to_3d[:2, 3])
        if simplify_mm > 0:
            polygon = polygon.simplify(simplify_mm, preserve_topology=True)
        if not polygon.is_empty and polygon.area > 0:
            polygons.append(polygon)
    return tuple(polygons)


def _point(values: np.ndarray) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def _q(value_mm: float) -> int:
    return round(value_mm / QUANTUM_MM)


def _rings(polygon: Polygon) -> list[list[int]]:
    rings = [polygon.exterior, *polygon.interiors]
    return [np.rint(np.asarray(ring.coords)[:-1, :2] / QUANTUM_MM).astype(np.int64).ravel().tolist() for ring in rings]


def _polygon(rings: list[list[int]], quantum_mm: float) -> Polygon:
    outer, *holes = (np.asarray(ring, dtype=np.float64).reshape(-1, 2) * quantum_mm for ring in rings)
    return Polygon(outer, holes)
