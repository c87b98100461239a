"""Slice images: radiological orientation whatever the grid's direction matrix, square pixels,
window presets, PNG bytes, the LRU byte budget, and pixel ↔ LPS mapping for the 3D cursor."""

from __future__ import annotations

import io

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from server.imaging.slices import (
    WINDOW_PRESETS,
    SliceCache,
    SliceError,
    VolumeGeometry,
    Window,
    layout,
    locate,
    lps_to_slice,
    pixel_to_lps,
    render_png,
    slice_pixels,
)
from tests.unit.imaging.volumes import AXIAL, FLIPPED, OBLIQUE, SAGITTAL, ball, union, volume

CENTRE = (5.0, -10.0, 60.0)
LEFT = (CENTRE[0] + 20.0, CENTRE[1], CENTRE[2])  # +x is the patient's left
ANTERIOR = (CENTRE[0], CENTRE[1] - 20.0, CENTRE[2])  # -y is anterior
SUPERIOR = (CENTRE[0], CENTRE[1], CENTRE[2] + 20.0)
DIRECTIONS = {"axial": AXIAL, "flipped": FLIPPED, "sagittal": SAGITTAL}


def marked(direction: np.ndarray, *markers: tuple[float, float, float]) -> sitk.Image:
    return volume(
        union(*(ball(m, 4.0) for m in markers)),
        centre_lps=CENTRE,
        size_xyz=(56, 50, 46),
        spacing_mm=(1.0, 1.0, 1.0),
        direction=direction,
    )


def bright_centroid(pixels: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(pixels > 128)
    assert rows.size, "the marker is not in this slice"
    return float(cols.mean()), float(rows.mean())  # (column, row)


def slice_through(image: sitk.Image, plane: str, point: tuple[float, float, float]) -> np.ndarray:
    hit = lps_to_slice(VolumeGeometry.from_image(image), plane, np.asarray(point))  # type: ignore[arg-type]
    return slice_pixels(image, plane, hit.index, "bone")  # type: ignore[arg-type]


@pytest.mark.parametrize("grid", sorted(DIRECTIONS))
def test_patients_left_is_on_image_right_in_axial_and_coronal(grid: str) -> None:
    image = marked(DIRECTIONS[grid], LEFT)
    for plane in ("axial", "coronal"):
        pixels = slice_through(image, plane, LEFT)
        col, _ = bright_centroid(pixels)
        assert col > 0.6 * pixels.shape[1], f"{plane}: marker at patient's left drawn at column {col}"


@pytest.mark.parametrize("grid", sorted(DIRECTIONS))
def test_anterior_is_up_in_axial_and_left_in_sagittal(grid: str) -> None:
    image = marked(DIRECTIONS[grid], ANTERIOR)
    pixels = slice_through(image, "axial", ANTERIOR)
    _, row = bright_centroid(pixels)
    assert row < 0.4 * pixels.shape[0]
    pixels = slice_through(image, "sagittal", ANTERIOR)
    col, _ = bright_centroid(pixels)
    assert col < 0.4 * pixels.shape[1]


@pytest.mark.parametrize("grid", sorted(DIRECTIONS))
def test_head_is_up_in_coronal_and_sagittal(grid: str) -> None:
    image = marked(DIRECTIONS[grid], SUPERIOR)
    for plane in ("coronal", "sagittal"):
        pixels = slice_through(image, plane, SUPERIOR)
        _, row = bright_centroid(pixels)
        assert row < 0.4 * pixels.shape[0], f"{plane}: superior marker drawn at row {row}"


def test_sagittal_acquisition_still_shows_anatomical_planes() -> None:
    geometry = VolumeGeometry.from_image(marked(SAGITTAL, LEFT))
    # voxel z runs along -L in a sagittal acquisition: the sagittal plane fixes it
    assert layout(geometry, "sagittal").axis == 2
    assert layout(geometry, "axial").axis == 1
    assert layout(geometry, "coronal").axis == 0


def test_pixels_are_square_using_the_spacing() -> None:
    image = volume(ball(CENTRE, 12.0), centre_lps=CENTRE, size_xyz=(100, 80, 30), spacing_mm=(0.5, 0.5, 2.0))
    assert slice_pixels(image, "axial", 15, "bone").shape == (80, 100)
    assert slice_pixels(image, "coronal", 40, "bone").shape == (120, 100)  # 30 slices x 2 mm at 0.5 mm
    assert slice_pixels(image, "sagittal", 50, "bone").shape == (120, 80)
    circle = slice_pixels(image, "coronal", 40, "bone") > 128
    rows, cols = np.nonzero(circle)
    # round, not squashed 4:1; the 2 mm slices make the height uncertain by one slice (4 pixels)
    assert (rows.max() - rows.min()) == pytest.approx(cols.max() - cols.min(), abs=4)


def test_window_presets_map_hu_to_grey() -> None:
    assert WINDOW_PRESETS["bone"] == Window(2000.0, 500.0)
    assert WINDOW_PRESETS["bone_narrow"] == Window(1800.0, 400.0)
    assert WINDOW_PRESETS["soft_tissue"] == Window(400.0, 40.0)
    assert WINDOW_PRESETS["lung"] == Window(1500.0, -600.0)
    values = np.array([[[-1000, -160, 40, 240, 1500]]], dtype=np.int16)
    image = sitk.GetImageFromArray(values)
    soft = slice_pixels(image, "axial", 0, "soft_tissue")[0]
    assert soft[0] == 0 and soft[1] == 0 and soft[4] == 255 and soft[3] == 255
    assert soft[2] in (127, 128)
    lung = slice_pixels(image, "axial", 0, "lung")[0]
    assert lung[0] == pytest.approx(255 * (-1000 - (-600 - 750)) / 1500, abs=1)
    custom = slice_pixels(image, "axial", 0, Window(width_hu=100.0, level_hu=240.0))[0]
    assert custom.tolist()[2:] == [0, 128, 255]
    with pytest.raises(SliceError):
        Window(0.0, 40.0)
    with pytest.raises(SliceError, match="unknown window"):
        slice_pixels(image, "axial", 0, "brain")


def test_png_bytes_decode_to_the_slice_and_are_deterministic() -> None:
    image = marked(OBLIQUE, LEFT)
    data = render_png(image, "coronal", 20, "bone")
    assert data.startswith(b"\x89PNG")
    decoded = np.asarray(Image.open(io.BytesIO(data)))
    assert np.array_equal(decoded, slice_pixels(image, "coronal", 20, "bone"))
    assert render_png(image, "coronal", 20, "bone") == data


def test_index_outside_the_volume_or_unknown_plane_is_refused() -> None:
    image = marked(AXIAL, LEFT)
    with pytest.raises(SliceError, match="outside"):
        slice_pixels(image, "axial", 46, "bone")
    with pytest.raises(SliceError, match="unknown plane"):
        slice_pixels(image, "oblique", 0, "bone")  # type: ignore[arg-type]


@pytest.mark.parametrize("grid", ["sagittal", "oblique", "flipped"])
def test_3d_cursor_lands_on_the_marker_in_every_plane(grid: str) -> None:
    direction = {"sagittal": SAGITTAL, "oblique": OBLIQUE, "flipped": FLIPPED}[grid]
    target = (CENTRE[0] + 7.0, CENTRE[1] - 5.0, CENTRE[2] + 9.0)
    image = volume(
        ball(target, 3.0), centre_lps=CENTRE, size_xyz=(50, 44, 36), spacing_mm=(0.8, 0.9, 1.3), direction=direction
    )
    geometry = VolumeGeometry.from_image(image)
    for plane, hit in locate(geometry, np.asarray(target)).items():
        assert hit.inside
        pixels = slice_pixels(image, plane, hit.index, "bone")
        col, row = bright_centroid(pixels)
        pixel_mm = layout(geometry, plane).pixel_mm
        assert np.hypot(col - hit.col_px, row - hit.row_px) * pixel_mm < 1.5, plane
        # and back: the pixel maps to the point, up to the distance to the slice plane
        back = pixel_to_lps(geometry, plane, hit.index, hit.col_px, hit.row_px)
        assert np.linalg.norm(back - np.asarray(target)) == pytest.approx(hit.distance_mm, abs=1e-6)


def test_pixel_lps_round_trip_on_an_anisotropic_oblique_grid() -> None:
    image = volume(
        ball(CENTRE, 3.0), centre_lps=CENTRE, size_xyz=(40, 30, 20), spacing_mm=(0.6, 0.9, 2.0), direction=OBLIQUE
    )
    geometry = VolumeGeometry.from_image(image)
    rng = np.random.default_rng(7)
    for plane in ("axial", "coronal", "sagittal"):
        lay = layout(geometry, plane)  # type: ignore[arg-type]
        for col, row in rng.uniform(0, 1, (5, 2)) * (lay.width_px - 1, lay.height_px - 1):
            point = pixel_to_lps(geometry, plane, 7, col, row)  # type: ignore[arg-type]
            hit = lps_to_slice(geometry, plane, point)  # type: ignore[arg-type]
            assert hit.index == 7 and hit.distance_mm == pytest.approx(0.0, abs=1e-9)
            assert (hit.col_px, hit.row_px) == pytest.approx((col, row), abs=1e-9)
    outside = lps_to_slice(geometry, "axial", np.asarray(CENTRE) + 500.0)
    assert not outside.inside


def test_cache_hits_and_keeps_within_its_byte_budget() -> None:
    image = marked(AXIAL, LEFT)
    one = len(render_png(image, "axial", 0, "bone"))
    cache = SliceCache(max_bytes=int(one * 3.5))
    first = cache.png("vol-1", image, "axial", 0, "bone")
    assert cache.png("vol-1", image, "axial", 0, WINDOW_PRESETS["bone"]) is first  # preset name = its window
    assert (cache.hits, cache.misses) == (1, 1)
    cache.png("vol-1", image, "axial", 0, "soft_tissue")  # another window is another image
    assert cache.misses == 2
    for index in (1, 2, 3, 4):
        cache.png("vol-1", image, "axial", index, "bone")
        assert cache.bytes <= cache.max_bytes
    cache.png("vol-1", image, "axial", 4, "bone")
    assert cache.hits == 2
    cache.png("vol-1", image, "axial", 0, "bone")  # least recently used: was dropped
    assert cache.misses == 7
    cache.png("vol-2", image, "axial", 0, "bone")
    cache.forget("vol-1")
    assert len(cache) == 1 and cache.bytes == len(cache.png("vol-2", image, "axial", 0, "bone"))
