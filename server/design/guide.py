"""Patient-specific guide plates: a plate that seats on a chosen patch of bone, with drill sleeves.

Recipe (a distance-field offset, not an offset along vertex normals, which folds over itself in
concave regions):
- plate   = {p : d_patch(p) ≤ c + t  and  d_bone(p) ≥ c}: everything within c + t of the patch (the
            bone surface in the region, plus the footprint of each sleeve) that keeps the clearance
            c from the bone; one level set, so its underside is the bone offset by c.
- sleeve  = a tube of outer radius r_in + wall along each trajectory, from below the entry to
            `sleeve_length_mm` above it, minus the bone offset by c + t/2 (its foot ends inside the
            plate, whatever the angle between trajectory and bone).
- channel = a cylinder whose flats are at r_in = (drill + drill clearance)/2 from the axis, through
            sleeve and plate.
guide = (plate + sleeves) - channels, all in manifold3d, so the result is a closed 2-manifold.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import manifold3d
import numpy as np
import shapely
import trimesh

from server.design import topology
from server.design.distance import SurfaceDistance
from server.design.errors import InvalidDesignParameters
from server.design.label import (
    SINK_MM,
    GuideLabel,
    checked_resolution,
    glyph_rectangles,
    label_extent_mm,
    label_frame,
    text_field,
)
from server.design.levelset import level_set
from server.design.manifolds import require_nonempty, solid_report, to_manifold, to_trimesh
from server.design.meshes import MeshResult
from server.design.params import LassoRegion, Region, SphereRegion, Trajectory

CHANNEL_SEGMENTS = 64
SLEEVE_SEGMENTS = 48
MAX_OBLIQUITY_DEG = 75.0


@dataclass(frozen=True)
class GuideParameters:
    clearance_mm: float = 0.2  # gap between bone and plate
    thickness_mm: float = 3.0  # plate thickness
    sleeve_length_mm: float = 15.0  # from the entry point on the bone to the sleeve's top
    sleeve_wall_mm: float = 2.0
    drill_clearance_mm: float = 0.2  # sleeve inner diameter = drill diameter + this
    resolution_mm: float = 0.4  # level-set grid edge: the plate's surfaces are within ~this of exact

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise InvalidDesignParameters(f"{name}: must be a finite number ≥ 0", field=name)
        if self.thickness_mm <= 0 or self.resolution_mm <= 0 or self.sleeve_wall_mm <= 0:
            raise InvalidDesignParameters("thickness_mm, sleeve_wall_mm and resolution_mm must be > 0")
        if self.resolution_mm > self.thickness_mm / 2:
            raise InvalidDesignParameters("resolution_mm must be at most half of thickness_mm", field="resolution_mm")
        if self.sleeve_length_mm <= self.clearance_mm + self.thickness_mm:
            raise InvalidDesignParameters("sleeve_length_mm must reach beyond the plate (> clearance + thickness)")

    def to_json(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def make_guide(
    bone: trimesh.Trimesh,
    region: Region,
    trajectories: list[Trajectory],
    params: GuideParameters | None = None,
    label: GuideLabel | None = None,
) -> MeshResult:
    params = params or GuideParameters()
    c, t, h = params.clearance_mm, params.thickness_mm, params.resolution_mm
    bone_solid = to_manifold(bone, "bone")
    vertices, faces = np.asarray(bone.vertices, dtype=np.float64), np.asarray(bone.faces, dtype=np.int64)
    corners = vertices[faces]
    centroids = corners.mean(axis=1)
    normals = np.asarray(bone.face_normals)
    patch = select_patch(bone, region, centroids, normals)
    if not patch.any():
        raise InvalidDesignParameters("the region selects no bone surface", field="region")
    sleeves = [_sleeve_geometry(tr, params, centroids, normals) for tr in trajectories]
    for sleeve in sleeves:
        patch |= sleeve["footprint"]
    margin = c + t + 2 * h
    plate_low, plate_high = corners[patch].min(axis=(0, 1)) - margin, corners[patch].max(axis=(0, 1)) + margin
    low, high = plate_low, plate_high
    for sleeve in sleeves:
        low, high = np.minimum(low, sleeve["low"]), np.maximum(high, sleeve["high"])
    if label is not None:
        reach = max(label_extent_mm(label)) + c + t + label.raised_mm + SINK_MM + 1.0
        low, high = (
            np.minimum(low, np.subtract(label.anchor_lps, reach)),
            np.maximum(high, np.add(label.anchor_lps, reach)),
        )
    nearby = _faces_near(corners, low - margin, high + margin)
    corner_normals = np.asarray(bone.vertex_normals)[faces[nearby]]
    bone_distance = SurfaceDistance(corners[nearby], spacing_mm=h / 2, corner_normals=corner_normals)
    patch_distance = SurfaceDistance(corners[patch], spacing_mm=h / 2)
    in_patch = patch[nearby]
    entry_to_bone = bone_distance.closest(np.asarray([tr.entry_lps for tr in trajectories]).reshape(-1, 3))[0]
    for index, distance in enumerate(entry_to_bone.tolist()):
        if distance > c + t:  # its sleeve would float free of the plate
            raise InvalidDesignParameters(
                f"trajectories[{index}].entry_lps is {distance:.1f} mm from the bone; it should be on its surface",
                field=f"trajectories[{index}].entry_lps",
            )

    def plate_field(points: np.ndarray) -> np.ndarray:
        # the band where the plate's surfaces can be: exact distances there, a negative constant beyond
        band = np.isfinite(patch_distance.coarse(points, upper_mm=margin + h))
        value = np.full(len(points), -h)
        near = points[band]
        signed_to_bone, face = bone_distance.signed(near)
        to_patch = np.abs(signed_to_bone)
        elsewhere = ~in_patch[face]  # closest to bone outside the patch: measure to the patch itself
        to_patch[elsewhere] = patch_distance.closest(near[elsewhere])[0]
        value[band] = np.minimum(c + t - to_patch, signed_to_bone - c)
        return value

    # signed, so the underside at d = c is resolved even when 2c is below the grid spacing; wherever a
    # sign is wrong deep inside the bone, the boolean subtraction of the bone below removes the piece
    plate, evaluated = level_set(plate_field, [*plate_low, *plate_high], h)
    require_nonempty(plate, "the guide plate")
    parts, cutters, sleeve_reports = [plate], [bone_solid], []
    for trajectory, sleeve, entry_distance in zip(trajectories, sleeves, entry_to_bone.tolist(), strict=True):
        seat = c + t / 2  # the tube's foot ends mid-plate, not on the plate's underside

        def seat_field(points: np.ndarray, seat: float = seat) -> np.ndarray:
            band = np.isfinite(bone_distance.coarse(points, upper_mm=seat + 2 * h + bone_distance.spacing_mm))
            value = np.full(len(points), -h)
            value[band] = seat - bone_distance.closest(points[band])[0]
            return value

        seat_band, n = level_set(seat_field, [*sleeve["low"], *sleeve["high"]], h)
        evaluated += n
        parts.append(manifold3d.Manifold.batch_boolean([sleeve["tube"], seat_band], manifold3d.OpType.Subtract))
        cutters.append(sleeve["channel"])
        sleeve_reports.append(
            sleeve["report"] | {"trajectory": trajectory.to_json(), "entry_to_bone_mm": round(entry_distance, 6)}
        )
    label_report = None
    if label is not None:
        letters, n, label_report = _label_solid(
            label, params, bone_distance, patch_distance, corners[nearby], normals[nearby]
        )
        evaluated += n
        parts.append(letters)
    guide = manifold3d.Manifold.batch_boolean(parts, manifold3d.OpType.Add)
    guide = manifold3d.Manifold.batch_boolean([guide, *cutters], manifold3d.OpType.Subtract)
    require_nonempty(guide, "the guide")
    report: dict[str, Any] = {
        "guide": {**solid_report(guide), "components": len(guide.decompose())},
        "patch_faces": int(patch.sum()),
        "patch_area_mm2": round(float(np.asarray(bone.area_faces)[patch].sum()), 6),
        "sleeves": sleeve_reports,
        "label": label_report,
        "grid_points_evaluated": evaluated,
        "parameters": params.to_json(),
    }
    return MeshResult(meshes={"guide": to_trimesh(guide)}, report=report)


def _label_solid(
    label: GuideLabel,
    params: GuideParameters,
    bone_distance: SurfaceDistance,
    patch_distance: SurfaceDistance,
    corners: np.ndarray,
    normals: np.ndarray,
) -> tuple[manifold3d.Manifold, int, dict[str, Any]]:
    """The letters: inside the text outline, and from `SINK_MM` below to `raised_mm` above the plate's
    top (both measured from the bone, so the letters follow its curvature)."""
    c, t = params.clearance_mm, params.thickness_mm
    h = checked_resolution(label, params.resolution_mm)
    half_width, half_height = label_extent_mm(label)
    _d, _face, anchor = bone_distance.nearest(np.asarray([label.anchor_lps]))
    anchor = anchor[0]
    if patch_distance.closest(anchor[None, :])[0][0] > c + t:
        raise InvalidDesignParameters("label.anchor_lps: not on the plate's patch of bone", field="label")
    # the mean normal under the label: its plane is the text's
    centroids = corners.mean(axis=1)
    under = np.linalg.norm(centroids - anchor, axis=1) <= max(half_width, half_height)
    areas = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    normal = (normals[under] * areas[under, None]).sum(axis=0)
    normal /= np.linalg.norm(normal)
    right, up = label_frame(label, normal)
    rectangles = glyph_rectangles(label.text, label.height_mm)
    top = c + t + label.raised_mm

    def letters_field(points: np.ndarray) -> np.ndarray:
        offset = points - anchor
        ink = text_field(np.stack([offset @ right, offset @ up], axis=1), rectangles)
        value = np.minimum(ink, -h / 2)  # outside the text: negative, no distance needed
        inside = ink > -2 * h
        signed, _faces = bone_distance.signed(points[inside])
        value[inside] = np.minimum(ink[inside], np.minimum(top - signed, signed - (c + t - SINK_MM)))
        return value

    # a box in the label's frame: around the text, from below the plate's top (the surface falls away
    # under a wide label on a curved bone) to above the letters
    along = np.array([-half_width - 2 * h, half_width + 2 * h])
    across = np.array([-half_height - 2 * h, half_height + 2 * h])
    depth = np.array([c + t - SINK_MM - half_width - 2 * h, top + 2 * h])
    box = np.array([anchor + right * a + up * b + normal * d for a in along for b in across for d in depth])
    letters, evaluated = level_set(letters_field, [*box.min(axis=0), *box.max(axis=0)], h)
    require_nonempty(letters, "the label")
    report = {**label.to_json(), "surface_lps": [round(float(v), 6) for v in anchor], "resolution_mm": h}
    return letters, evaluated, report


def select_patch(bone: trimesh.Trimesh, region: Region, centroids: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Faces of the bone in the region: for a sphere, the connected patch inside it nearest its centre;
    for a lasso, the faces inside the polygon that face the eye and are not hidden behind bone."""
    faces = np.asarray(bone.faces)
    if isinstance(region, SphereRegion):
        center = np.asarray(region.center_lps)
        inside = np.linalg.norm(centroids - center, axis=1) <= region.radius_mm
        if not inside.any():
            return inside
        chosen = np.flatnonzero(inside)
        edges = topology.edge_topology(faces[chosen])
        _count, labels = topology.face_components(len(chosen), topology.face_adjacency(edges)[0])
        nearest = int(np.argmin(np.linalg.norm(centroids[chosen] - center, axis=1)))
        patch = np.zeros(len(faces), dtype=bool)
        patch[chosen[labels == labels[nearest]]] = True
        return patch
    if isinstance(region, LassoRegion):
        view = np.asarray(region.view_direction_lps)
        u, w = _plane_basis(view)
        polygon = shapely.Polygon(np.asarray(region.points_lps) @ np.stack([u, w], axis=1))
        if not polygon.is_valid or polygon.area <= 0:
            raise InvalidDesignParameters("region: the lasso polygon crosses itself or has no area", field="region")
        flat = centroids @ np.stack([u, w], axis=1)
        candidate = shapely.contains_xy(polygon, flat[:, 0], flat[:, 1]) & (normals @ view < 0)
        chosen = np.flatnonzero(candidate)
        if len(chosen):
            nudge = 1e-4 * max(float(np.ptp(np.asarray(bone.vertices), axis=0).max()), 1.0)
            origins = centroids[chosen] - view * nudge
            hidden = bone.ray.intersects_any(origins, np.tile(-view, (len(chosen), 1)))
            candidate[chosen[hidden]] = False
        return candidate
    raise InvalidDesignParameters(f"unknown region type {type(region).__name__}", field="region")


def _plane_basis(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(normal, helper)
    u /= np.linalg.norm(u)
    return u, np.cross(normal, u)


def _faces_near(corners: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Faces whose bounding box meets the box [low, high]."""
    face_low, face_high = corners.min(axis=1), corners.max(axis=1)
    return np.flatnonzero(np.all(face_high >= low, axis=1) & np.all(face_low <= high, axis=1))


def _sleeve_geometry(
    trajectory: Trajectory, params: GuideParameters, centroids: np.ndarray, normals: np.ndarray
) -> dict[str, Any]:
    c, t, h = params.clearance_mm, params.thickness_mm, params.resolution_mm
    inward = trajectory.direction
    entry = np.asarray(trajectory.entry_lps)
    r_in = (trajectory.diameter_mm + params.drill_clearance_mm) / 2
    r_out = r_in + params.sleeve_wall_mm
    nearest_face = int(np.argmin(np.linalg.norm(centroids - entry, axis=1)))
    cos_angle = float(np.clip(-normals[nearest_face] @ inward, math.cos(math.radians(MAX_OBLIQUITY_DEG)), 1.0))
    # deep enough that the tube's rim reaches into the plate on a surface tilted against the axis
    depth = r_out * math.tan(math.acos(cos_angle)) + c + t + 2 * h
    bottom = entry + inward * depth
    top = entry - inward * params.sleeve_length_mm
    frame = _frame_along(-inward, bottom)
    tube = manifold3d.Manifold.cylinder(depth + params.sleeve_length_mm, r_out, -1.0, SLEEVE_SEGMENTS).transform(frame)
    channel_length = depth + params.sleeve_length_mm + 2.0
    channel_radius = r_in / math.cos(math.pi / CHANNEL_SEGMENTS)  # flats, not corners, at r_in
    channel = manifold3d.Manifold.cylinder(channel_length, channel_radius, -1.0, CHANNEL_SEGMENTS).transform(
        _frame_along(-inward, bottom + inward * 1.0)
    )
    # the patch under the sleeve: bone faces facing the drill within the tube's reach
    relative = centroids - entry
    axial = relative @ -inward
    radial = np.linalg.norm(relative - np.outer(axial, -inward), axis=1)
    footprint = (radial <= r_out + 2 * h) & (axial >= -depth) & (axial <= c + t) & (normals @ inward < 0)
    ends = np.stack([bottom, top])
    reach = r_out + 2 * h
    return {
        "tube": tube,
        "channel": channel,
        "footprint": footprint,
        "low": ends.min(axis=0) - reach,
        "high": ends.max(axis=0) + reach,
        "report": {
            "inner_diameter_mm": round(2 * r_in, 6),
            "outer_diameter_mm": round(2 * r_out, 6),
            "axis_lps": [round(float(v), 12) for v in -inward],
            "top_lps": [round(float(v), 6) for v in top],
            "length_above_entry_mm": params.sleeve_length_mm,
            "obliquity_deg": round(math.degrees(math.acos(cos_angle)), 6),
        },
    }


def _frame_along(axis: np.ndarray, origin: np.ndarray) -> tuple[tuple[float, ...], ...]:
    """3x4 affine matrix taking +z to the unit vector `axis` and the origin to `origin`."""
    u, w = _plane_basis(axis)
    rotation = np.stack([u, w, axis], axis=1)  # columns: images of x, y, z
    return tuple(tuple(float(v) for v in row) for row in np.concatenate([rotation, origin[:, None]], axis=1))
