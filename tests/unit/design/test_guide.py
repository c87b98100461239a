"""A guide plate from a synthetic bone, a surface region and two drill trajectories: closed, seated at the
clearance, not overlapping the bone, with sleeves of the requested bore along the requested axes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from server.design.booleans import boolean
from server.design.errors import InvalidDesignParameters
from server.design.guide import CHANNEL_SEGMENTS, GuideParameters, make_guide
from server.design.label import GuideLabel, label_frame
from server.design.meshes import MeshResult
from server.design.params import LassoRegion, SphereRegion, Trajectory
from server.design.topology import is_watertight

PARAMS = GuideParameters(clearance_mm=0.2, thickness_mm=3.0, sleeve_length_mm=14.0, resolution_mm=0.5)
REGION = SphereRegion((11.0, 0.0, 10.0), 11.0)  # on the shaft's lateral (+x) side
TRAJECTORIES = [
    Trajectory((11.0, 0.0, 6.0), (-5.0, 0.0, 6.0), 2.5),  # square to the shaft
    Trajectory((10.7, 2.5, 15.0), (0.0, -1.0, 19.0), 2.0),  # oblique
]


@pytest.fixture(scope="module")
def guide(bone: trimesh.Trimesh) -> MeshResult:
    return make_guide(bone, REGION, TRAJECTORIES, PARAMS)


def test_guide_is_one_closed_solid(guide: MeshResult) -> None:
    mesh = guide.meshes["guide"]
    assert is_watertight(np.asarray(mesh.faces))
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    assert guide.report["guide"]["components"] == 1
    assert len(guide.report["sleeves"]) == 2


def test_guide_does_not_overlap_the_bone(guide: MeshResult, bone: trimesh.Trimesh) -> None:
    overlap = boolean("intersection", guide.meshes["guide"], bone, allow_empty=True)
    assert overlap.report["result"]["volume_mm3"] < 0.1


def _bone_distances(bone: trimesh.Trimesh, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    closest, distance, _triangle = trimesh.proximity.closest_point(bone, points)
    return closest, distance


def test_contact_surface_lies_within_clearance_plus_0_2_mm_of_the_bone(
    guide: MeshResult, bone: trimesh.Trimesh
) -> None:
    mesh = guide.meshes["guide"]
    sample = np.arange(0, len(mesh.vertices), 7)
    points = np.asarray(mesh.vertices)[sample]
    closest, distance = _bone_distances(bone, points)
    towards_bone = (closest - points) / np.maximum(distance, 1e-12)[:, None]
    facing = np.einsum("ij,ij->i", np.asarray(mesh.vertex_normals)[sample], towards_bone) > 0.9
    underside = facing & (distance < PARAMS.clearance_mm + PARAMS.thickness_mm / 2)
    assert underside.sum() > 200  # the plate's underside is there, and sampled
    assert distance[underside].max() <= PARAMS.clearance_mm + 0.2
    assert distance.min() >= PARAMS.clearance_mm - 0.05  # nothing of the guide inside the clearance


def _axis_frame(trajectory: Trajectory) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    axis = -trajectory.direction  # outwards, along the sleeve
    u = np.cross(axis, [0.0, 0.0, 1.0] if abs(axis[2]) < 0.9 else [1.0, 0.0, 0.0])
    u /= np.linalg.norm(u)
    return axis, u, np.cross(axis, u)


@pytest.mark.parametrize("index", [0, 1])
def test_sleeve_bore_has_the_requested_diameter_along_the_requested_axis(guide: MeshResult, index: int) -> None:
    mesh = guide.meshes["guide"]
    trajectory = TRAJECTORIES[index]
    axis, u, w = _axis_frame(trajectory)
    radius = (trajectory.diameter_mm + PARAMS.drill_clearance_mm) / 2
    angles = np.linspace(0.0, 2 * np.pi, 24, endpoint=False)
    directions = np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * w
    # from just above the plate to just below the sleeve's top
    for along in np.linspace(PARAMS.clearance_mm + PARAMS.thickness_mm + 1.0, PARAMS.sleeve_length_mm - 1.0, 5):
        origin = np.asarray(trajectory.entry_lps) + axis * along
        hits, rays, _faces = mesh.ray.intersects_location(
            np.tile(origin, (len(angles), 1)), directions, multiple_hits=False
        )
        assert sorted(rays.tolist()) == list(range(len(angles)))  # every ray meets the bore
        distances = np.linalg.norm(hits - origin, axis=1)
        assert distances.min() >= radius - 0.005
        assert distances.max() <= radius / math.cos(math.pi / CHANNEL_SEGMENTS) + 0.005
    assert guide.report["sleeves"][index]["inner_diameter_mm"] == pytest.approx(2 * radius)
    assert guide.report["sleeves"][index]["axis_lps"] == pytest.approx(axis.tolist(), abs=1e-9)


@pytest.mark.parametrize("index", [0, 1])
def test_drill_channel_is_open_from_the_sleeve_top_to_the_bone(guide: MeshResult, index: int) -> None:
    trajectory = TRAJECTORIES[index]
    axis = -trajectory.direction
    start = np.asarray(trajectory.entry_lps) + axis * (PARAMS.sleeve_length_mm + 5.0)
    assert not guide.meshes["guide"].ray.intersects_any(start[None, :], -axis[None, :])[0]


def test_sleeve_wall_surrounds_the_bore(guide: MeshResult) -> None:
    """Rays from outside the sleeve towards its axis stop at the outer wall."""
    mesh = guide.meshes["guide"]
    trajectory = TRAJECTORIES[0]
    axis, u, _w = _axis_frame(trajectory)
    outer = (trajectory.diameter_mm + PARAMS.drill_clearance_mm) / 2 + PARAMS.sleeve_wall_mm
    origin = np.asarray(trajectory.entry_lps) + axis * (PARAMS.sleeve_length_mm - 2.0) + u * (outer + 5.0)
    hits, _rays, _faces = mesh.ray.intersects_location(origin[None, :], -u[None, :], multiple_hits=False)
    assert np.linalg.norm(hits[0] - origin) == pytest.approx(5.0, abs=0.05)


def test_lasso_region_makes_a_plate_on_the_visible_side_only(bone: trimesh.Trimesh) -> None:
    lasso = LassoRegion(((30.0, -6.0, 2.0), (30.0, 6.0, 2.0), (30.0, 6.0, 16.0), (30.0, -6.0, 16.0)), (-1.0, 0.0, 0.0))
    result = make_guide(bone, lasso, [TRAJECTORIES[0]], PARAMS)
    mesh = result.meshes["guide"]
    assert is_watertight(np.asarray(mesh.faces)) and result.report["guide"]["components"] == 1
    assert mesh.bounds[0][0] > 0.0  # nothing on the far (medial) side of the shaft
    overlap = boolean("intersection", mesh, bone, allow_empty=True)
    assert overlap.report["result"]["volume_mm3"] < 0.1


def test_region_off_the_bone_is_invalid(bone: trimesh.Trimesh) -> None:
    with pytest.raises(InvalidDesignParameters):
        make_guide(bone, SphereRegion((200.0, 0.0, 0.0), 5.0), TRAJECTORIES, PARAMS)


def test_parameters_are_checked() -> None:
    with pytest.raises(InvalidDesignParameters):
        GuideParameters(thickness_mm=1.0, resolution_mm=0.8)
    with pytest.raises(InvalidDesignParameters):
        GuideParameters(sleeve_length_mm=2.0)


def test_embossed_label_stands_on_the_plate_and_reads_from_outside(bone: trimesh.Trimesh) -> None:
    trajectory = TRAJECTORIES[0]
    label = GuideLabel("L-07", (10.5, -3.0, 14.5), height_mm=4.0, raised_mm=0.6)
    plain = make_guide(bone, REGION, [trajectory], PARAMS).meshes["guide"]
    result = make_guide(bone, REGION, [trajectory], PARAMS, label)
    mesh = result.meshes["guide"]
    assert is_watertight(np.asarray(mesh.faces)) and result.report["guide"]["components"] == 1
    # ink: L 11 + "-" 5 + 0 19 + 7 11 = 46 pixels of (4/7 mm)², raised 0.6 mm above the plate
    ink_mm2 = 46 * (4.0 / 7) ** 2
    assert mesh.volume - plain.volume == pytest.approx(ink_mm2 * 0.6, rel=0.2)
    # the letters' tops stand c + t + 0.6 from the bone
    vertices = np.asarray(mesh.vertices)
    vertices = vertices[np.linalg.norm(vertices - label.anchor_lps, axis=1) < 8.0]
    _closest, distance = _bone_distances(bone, vertices)
    tops = distance > PARAMS.clearance_mm + PARAMS.thickness_mm + 0.3
    assert tops.sum() > 100
    assert distance[tops].max() == pytest.approx(PARAMS.clearance_mm + PARAMS.thickness_mm + 0.6, abs=0.1)
    # read from outside (looking at the bone), the L's upright stroke is leftmost: not mirrored
    surface = np.asarray(result.report["label"]["surface_lps"])
    right, up = label_frame(label, np.asarray(bone.face_normals)[bone.nearest.on_surface([surface])[2][0]])
    ink = vertices[tops] - surface
    u, v = ink @ right, ink @ up
    leftmost, rightmost = u < u.min() + 0.5, u > u.max() - 0.5
    assert np.ptp(v[leftmost]) > 3.0  # the L's full-height stroke on the left
    assert np.ptp(v[rightmost]) < 3.0  # the 7's right edge is only its top bar and diagonal


def test_label_text_is_checked() -> None:
    with pytest.raises(InvalidDesignParameters):
        GuideLabel.from_json({"text": "Ü?", "anchor_lps": [0, 0, 0]})
    assert GuideLabel.from_json({"text": "r-3", "anchor_lps": [0, 0, 0]}).text == "R-3"


def test_an_entry_point_off_the_bone_is_invalid(bone: trimesh.Trimesh) -> None:
    floating = Trajectory((25.0, 0.0, 6.0), (0.0, 0.0, 6.0), 2.5)  # 14 mm out from the shaft
    with pytest.raises(InvalidDesignParameters) as caught:
        make_guide(bone, REGION, [floating], PARAMS)
    assert caught.value.details["field"] == "trajectories[0].entry_lps"
