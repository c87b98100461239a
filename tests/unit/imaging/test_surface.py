"""Surfaces in patient LPS mm: analytic shapes on sagittal, oblique and flipped grids with
anisotropic voxels come out where they are, the right size, closed, outward-facing; exports are
deterministic and reload with trimesh as the same geometry."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import trimesh

from server.imaging.mesh_files import to_3mf, to_glb, to_stl
from server.imaging.segment import SeedPointError, SegmentationParams, segment
from server.imaging.surface import (
    Mesh,
    MeshNotWatertight,
    SurfaceError,
    SurfaceParams,
    decimate,
    extract_surface,
    is_watertight,
    mask_to_mesh,
    measure,
    require_watertight,
    smooth,
)
from tests.support.phantoms import Ellipsoid, Sphere
from tests.unit.imaging.volumes import AXIAL, FLIPPED, OBLIQUE, SAGITTAL, ball, minus, union, volume

CENTRE = (12.0, -30.0, 105.0)
GRIDS = {
    "oblique": (OBLIQUE, (0.7, 0.9, 1.3)),
    "sagittal": (SAGITTAL, (0.8, 0.6, 1.5)),
    "flipped": (FLIPPED, (0.9, 0.75, 1.1)),
}


def shape_volume(inside, direction: np.ndarray, spacing: tuple[float, float, float], extent_mm: float = 42.0):  # type: ignore[no-untyped-def]
    size = tuple(int(extent_mm / s) for s in spacing)
    return volume(inside, centre_lps=CENTRE, size_xyz=size, spacing_mm=spacing, direction=direction)  # type: ignore[arg-type]


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_ellipsoid_surface_is_where_the_patient_is(grid: str) -> None:
    direction, spacing = GRIDS[grid]
    shape = Ellipsoid(CENTRE, (16.0, 12.0, 9.0))  # axes along L, P, S: an axis mix-up shows
    surface = extract_surface(
        segment(shape_volume(shape.contains, direction, spacing)), SurfaceParams(target_faces=3000)
    )
    report = surface.report
    assert report.watertight and report.components == 1
    assert report.faces <= 3000
    assert report.volume_mm3 == pytest.approx(shape.volume_mm3, rel=0.02)
    distance = np.abs(shape.signed_distance_mm(surface.mesh.vertices_lps))
    assert distance.max() < 1.0
    expected_min = np.asarray(CENTRE) - (16.0, 12.0, 9.0)
    assert np.allclose(report.bbox_min_lps, expected_min, atol=1.0)
    assert np.allclose(report.bbox_max_lps, np.add(CENTRE, (16.0, 12.0, 9.0)), atol=1.0)


def face_normals(mesh: Mesh) -> np.ndarray:
    v, f = mesh.vertices_lps, mesh.faces
    return np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_normals_point_outwards_whatever_the_handedness_of_the_grid(grid: str) -> None:
    direction, spacing = GRIDS[grid]
    sphere = Sphere(CENTRE, 14.0)
    surface = extract_surface(
        segment(shape_volume(sphere.contains, direction, spacing)), SurfaceParams(target_faces=2000)
    )
    v, f = surface.mesh.vertices_lps, surface.mesh.faces
    outward = v[f].mean(axis=1) - np.asarray(CENTRE)
    assert np.all(np.einsum("ij,ij->i", outward, face_normals(surface.mesh)) > 0)
    assert surface.report.volume_mm3 > 0
    assert surface.report.area_mm2 == pytest.approx(4 * np.pi * 14.0**2, rel=0.03)


def test_closed_cavity_gives_an_inner_surface_facing_the_cavity_when_not_filled() -> None:
    image = shape_volume(minus(ball(CENTRE, 16.0), ball(CENTRE, 10.0)), OBLIQUE, (0.8, 0.8, 1.0))
    surface = extract_surface(segment(image, SegmentationParams(fill_holes=False)), SurfaceParams(target_faces=6000))
    shell_mm3 = 4 / 3 * np.pi * (16.0**3 - 10.0**3)
    assert surface.report.watertight and surface.report.components == 2
    assert surface.report.volume_mm3 == pytest.approx(shell_mm3, rel=0.02)
    distance = np.linalg.norm(surface.mesh.vertices_lps - np.asarray(CENTRE), axis=1)
    assert np.all((np.abs(distance - 16.0) < 1.0) | (np.abs(distance - 10.0) < 1.0))
    v, f = surface.mesh.vertices_lps, surface.mesh.faces
    radial = v[f].mean(axis=1) - np.asarray(CENTRE)
    facing = np.einsum("ij,ij->i", radial, face_normals(surface.mesh))
    inner = np.linalg.norm(radial, axis=1) < 13.0
    assert inner.any() and np.all(facing[inner] < 0) and np.all(facing[~inner] > 0)  # out of the bone


def test_bone_cut_by_the_scan_edge_is_capped_and_closed() -> None:
    image = volume(
        ball(CENTRE, 12.0),
        centre_lps=(CENTRE[0], CENTRE[1], CENTRE[2] + 8.0),
        size_xyz=(32, 32, 16),
        spacing_mm=(1.0, 1.0, 1.0),
    )
    surface = extract_surface(segment(image), SurfaceParams(target_faces=None))
    assert surface.report.watertight
    lowest_centre_z = image.TransformIndexToPhysicalPoint((0, 0, 0))[2]
    assert surface.report.bbox_min_lps[2] == pytest.approx(lowest_centre_z - 0.5, abs=0.3)  # capped half a voxel out


def test_largest_or_seeded_component_at_surface_level() -> None:
    a, b = (CENTRE[0] - 11, CENTRE[1], CENTRE[2]), (CENTRE[0] + 12, CENTRE[1], CENTRE[2])
    image = shape_volume(union(ball(a, 9.0), ball(b, 6.0)), SAGITTAL, (0.9, 0.9, 1.0), extent_mm=50)
    mask = segment(image, SegmentationParams(keep="all"))
    both = extract_surface(mask, SurfaceParams(target_faces=None))
    largest = extract_surface(mask, SurfaceParams(target_faces=None, keep="largest"))
    seeded = extract_surface(mask, SurfaceParams(target_faces=None, keep="seed", seed_lps=b))
    assert both.report.components == 2
    assert largest.report.components == 1 and seeded.report.components == 1
    assert largest.report.volume_mm3 == pytest.approx(4 / 3 * np.pi * 9.0**3, rel=0.03)
    assert seeded.report.volume_mm3 == pytest.approx(4 / 3 * np.pi * 6.0**3, rel=0.04)
    with pytest.raises(SeedPointError):
        extract_surface(mask, SurfaceParams(keep="seed", seed_lps=CENTRE))


def test_smoothing_removes_the_staircase_without_shrinking() -> None:
    sphere = Sphere(CENTRE, 12.0)
    raw = mask_to_mesh(segment(shape_volume(sphere.contains, OBLIQUE, (1.0, 1.0, 1.0))).image)
    smoothed = smooth(raw, iterations=20, pass_band=0.01)
    raw_error = np.abs(sphere.signed_distance_mm(raw.vertices_lps))
    smooth_error = np.abs(sphere.signed_distance_mm(smoothed.vertices_lps))
    assert smooth_error.mean() < 0.5 * raw_error.mean()
    assert measure(smoothed).volume_mm3 == pytest.approx(measure(raw).volume_mm3, rel=0.01)
    assert np.allclose(smoothed.vertices_lps.mean(axis=0), raw.vertices_lps.mean(axis=0), atol=0.05)
    assert np.array_equal(smoothed.faces, raw.faces)


def test_chunked_decimation_stays_closed_and_on_the_surface() -> None:
    sphere = Sphere(CENTRE, 15.0)
    mesh = smooth(mask_to_mesh(segment(shape_volume(sphere.contains, OBLIQUE, (0.6, 0.6, 0.7), extent_mm=34)).image))
    whole = decimate(mesh, 3000, chunk_faces=10**9)
    chunked = decimate(mesh, 3000, chunk_faces=len(mesh.faces) // 5)
    for result in (whole, chunked):
        assert is_watertight(result)
        assert 2500 <= len(result.faces) <= 3000
        assert np.abs(sphere.signed_distance_mm(result.vertices_lps)).max() < 0.5
        assert measure(result).volume_mm3 == pytest.approx(sphere.volume_mm3, rel=0.02)


def test_open_mesh_is_refused_loudly() -> None:
    tetra = Mesh(
        np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64),
        np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], dtype=np.int32),
    )
    assert is_watertight(tetra)
    require_watertight(tetra)
    assert not is_watertight(Mesh(tetra.vertices_lps, tetra.faces[:3]))
    with pytest.raises(MeshNotWatertight, match="3 open"):
        require_watertight(Mesh(tetra.vertices_lps, tetra.faces[:3]))
    flipped_one = tetra.faces.copy()
    flipped_one[0] = flipped_one[0][::-1]
    assert not is_watertight(Mesh(tetra.vertices_lps, flipped_one))


def test_empty_mask_has_no_surface() -> None:
    empty = sitk.Image(8, 8, 8, sitk.sitkUInt8)
    with pytest.raises(SurfaceError, match="empty"):
        extract_surface(empty)


@pytest.fixture(scope="module")
def bone_surface() -> Mesh:
    shape = Ellipsoid(CENTRE, (14.0, 10.0, 8.0))
    return extract_surface(
        segment(shape_volume(shape.contains, OBLIQUE, (0.8, 0.9, 1.1))), SurfaceParams(target_faces=2500)
    ).mesh


def test_exports_are_deterministic(bone_surface: Mesh) -> None:
    shape = Ellipsoid(CENTRE, (14.0, 10.0, 8.0))
    again = extract_surface(
        segment(shape_volume(shape.contains, OBLIQUE, (0.8, 0.9, 1.1))), SurfaceParams(target_faces=2500)
    ).mesh
    for export in (to_glb, to_stl, to_3mf):
        assert export(bone_surface) == export(again)


def same_surface(loaded: trimesh.Trimesh, mesh: Mesh, tolerance_mm: float) -> None:
    assert loaded.is_watertight
    reference = measure(mesh)
    assert loaded.volume == pytest.approx(reference.volume_mm3, rel=1e-4)
    assert len(loaded.faces) == len(mesh.faces)
    assert np.allclose(np.sort(loaded.vertices, axis=0), np.sort(mesh.vertices_lps, axis=0), atol=tolerance_mm)


def test_glb_reloads_as_the_same_lps_mm_geometry_with_its_frame_recorded(bone_surface: Mesh) -> None:
    data = to_glb(bone_surface, name="mandible")
    scene = trimesh.load(io.BytesIO(data), file_type="glb", process=False)
    (loaded,) = scene.geometry.values()
    assert len(loaded.vertices) == len(bone_surface.vertices_lps)
    assert np.allclose(loaded.vertices, bone_surface.vertices_lps, atol=1e-4)
    assert np.array_equal(loaded.faces, bone_surface.faces)
    same_surface(loaded, bone_surface, 1e-4)
    json_length = struct.unpack_from("<I", data, 12)[0]
    gltf = json.loads(data[20 : 20 + json_length])
    assert gltf["asset"]["extras"]["units"] == "mm" and gltf["asset"]["extras"]["frame"] == "LPS"
    assert gltf["nodes"][0]["name"] == "mandible (LPS mm)" and "matrix" not in gltf["nodes"][0]


def test_binary_stl_reloads_as_the_same_geometry(bone_surface: Mesh) -> None:
    data = to_stl(bone_surface)
    assert data.startswith(b"SPACE=LPS UNITS=mm")
    assert len(data) == 84 + 50 * len(bone_surface.faces)
    loaded = trimesh.load(io.BytesIO(data), file_type="stl")
    same_surface(loaded, bone_surface, 1e-4)


def test_3mf_is_in_millimetres_and_reloads_as_the_same_geometry(bone_surface: Mesh) -> None:
    data = to_3mf(bone_surface)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        model = archive.read("3D/3dmodel.model").decode()
    assert 'unit="millimeter"' in model
    scene = trimesh.load(io.BytesIO(data), file_type="3mf")
    loaded = scene.to_geometry() if isinstance(scene, trimesh.Scene) else scene
    same_surface(loaded, bone_surface, 1e-3)


def test_spongy_bone_full_of_tunnels_is_decimated_without_breaking_the_surface() -> None:
    # Trabecular noise: thresholding leaves a sponge of tunnels, where edge collapses pinch sheets.
    rng = np.random.default_rng(3)
    image = shape_volume(ball(CENTRE, 11.0), AXIAL, (0.7, 0.7, 0.7), extent_mm=28)
    hu = sitk.GetArrayFromImage(image).astype(np.float64)
    hu = np.where(hu > 0, 330.0 + rng.normal(0.0, 110.0, hu.shape), 0.0)
    noisy = sitk.GetImageFromArray(hu.astype(np.int16))
    noisy.CopyInformation(image)
    mask = segment(noisy, SegmentationParams(keep="all", fill_holes=False))
    raw = mask_to_mesh(mask.image)
    target = len(raw.faces) // 10
    surface = extract_surface(mask, SurfaceParams(target_faces=target))
    assert surface.report.watertight
    assert surface.report.faces <= len(raw.faces)
    # the target is met, or the report says which components were kept finer, and why
    assert surface.report.faces <= 1.1 * target or any("topology" in note for note in surface.report.notes)
    assert surface.report.volume_mm3 == pytest.approx(measure(smooth(raw)).volume_mm3, rel=0.05)


def test_ct_dicom_series_to_surface_end_to_end(tmp_path: Path) -> None:
    """Phantom CT written as sagittal DICOM with anisotropic pixels → series → segment → surface:
    the model is where the phantom's bone is, in patient LPS mm."""
    from server.imaging.series import volumes_from_paths
    from tests.support.phantoms import CtPhantom, Cylinder, Grid, write_series

    centre = (12.0, -30.0, 105.0)

    def at(dx: float, dy: float, dz: float) -> tuple[float, float, float]:
        return (centre[0] + dx, centre[1] + dy, centre[2] + dz)

    phantom = CtPhantom(
        shapes=(Sphere(at(5.0, -6.0, 5.0), 8.0), Ellipsoid(at(-8.0, 7.0, -6.0), (6.0, 5.0, 4.0))),
        body=Cylinder(centre, (0.0, 0.0, 1.0), 19.0, 30.0),
    )
    grid = Grid(
        rows=48,
        columns=56,
        pixel_spacing_mm=(0.8, 0.7),
        slice_count=40,
        slice_step_mm=1.0,
        centre_lps=centre,
        orientation="sagittal",
    )
    written = write_series(tmp_path / "ct", phantom, grid, shuffle_seed=5)
    volumes, problems = volumes_from_paths(written.paths)
    assert not problems and len(volumes) == 1
    image = volumes[0].image
    assert not np.allclose(np.array(image.GetDirection()).reshape(3, 3), np.eye(3))
    # bone 1000 HU in water 0 HU, partial volume: the half-way threshold is unbiased
    mask = segment(image, SegmentationParams(hu_min=500, hu_max=3071, keep="all"))
    surface = extract_surface(mask, SurfaceParams(target_faces=6000))
    assert surface.report.watertight and surface.report.components == 2
    assert surface.report.volume_mm3 == pytest.approx(phantom.bone_volume_mm3, rel=0.02)
    assert np.abs(phantom.bone_signed_distance_mm(surface.mesh.vertices_lps)).max() < 1.0
    seeded = extract_surface(
        segment(image, SegmentationParams(hu_min=500, hu_max=3071, keep="seed", seed_lps=at(5.0, -6.0, 5.0)))
    )
    assert seeded.report.components == 1  # the sphere alone: its volume, its place
    assert seeded.report.volume_mm3 == pytest.approx(4 / 3 * np.pi * 8.0**3, rel=0.03)
    assert np.abs(Sphere(at(5.0, -6.0, 5.0), 8.0).signed_distance_mm(seeded.mesh.vertices_lps)).max() < 1.0
