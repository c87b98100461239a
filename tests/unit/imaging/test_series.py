"""volumes_from_files: phantoms with known LPS geometry become volumes whose voxels sit where the
phantom says, whatever the file order, orientation, tilt, gaps or encoding; what is no volume is
refused with a code and a reason."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_files
from pydicom.uid import RLELossless

from server.imaging.dicom_files import FileProblem, Limits, ProblemCode, read_dicom
from server.imaging.series import (
    SeriesProblem,
    SeriesProblemCode,
    Volume,
    VolumeLimits,
    volumes_from_files,
    volumes_from_paths,
)
from tests.support.phantoms import Grid, default_phantom, write_series
from tests.support.volume_checks import bone_volume_mm3, shape_centre_errors_mm, voxel_centres_lps

OBLIQUE_IOP = (0.9, 0.1, 0.2, -0.1, 0.95, 0.3)
KNOWN_CODES = {c.value for c in ProblemCode} | {c.value for c in SeriesProblemCode}


def _one_volume(folder: Path, **limits: float) -> tuple[Volume, list[FileProblem | SeriesProblem]]:
    volumes, problems = volumes_from_paths(sorted(folder.iterdir()), volume_limits=VolumeLimits(**limits))
    assert len(volumes) == 1, f"expected one volume, got {len(volumes)}; problems: {problems}"
    return volumes[0], problems


def _refusal(folder: Path, **limits: float) -> SeriesProblem:
    volumes, problems = volumes_from_paths(sorted(folder.iterdir()), volume_limits=VolumeLimits(**limits))
    assert volumes == []
    refusals = [p for p in problems if isinstance(p, SeriesProblem)]
    assert len(refusals) == 1 and refusals[0].reason.strip()
    return refusals[0]


def _assert_on_the_phantom(volume: Volume, grid: Grid) -> None:
    phantom = default_phantom(grid.centre_lps)
    errors = shape_centre_errors_mm(volume.image, phantom)
    assert max(errors) < 0.5, f"shape centres off by {errors} mm"
    assert bone_volume_mm3(volume.image, phantom) == pytest.approx(phantom.bone_volume_mm3, rel=0.03)
    direction = np.asarray(volume.image.GetDirection()).reshape(3, 3)
    assert np.allclose(direction.T @ direction, np.eye(3), atol=1e-9)


def _edit(paths: list[Path], change: Callable[[int, pydicom.Dataset], None]) -> None:
    for n, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        change(n, ds)
        ds.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize("orientation", ["axial", "coronal", "sagittal", OBLIQUE_IOP])
def test_every_voxel_centre_is_where_the_slice_header_puts_it(tmp_path: Path, orientation: object) -> None:
    grid = Grid(orientation=orientation)  # type: ignore[arg-type]
    write_series(tmp_path, grid=grid, shuffle_seed=7)
    volume, problems = _one_volume(tmp_path)
    assert problems == []
    centres = voxel_centres_lps(volume.image)  # (z, y, x, 3)
    expected = np.stack([grid.voxel_centres_lps(k) for k in range(grid.slice_count)])  # (k, row, column, 3)
    assert np.abs(centres - expected).max() < 1e-4
    assert volume.image.GetSpacing() == pytest.approx((0.8, 1.0, 1.5))  # column, row, slice: row spacing stored first
    _assert_on_the_phantom(volume, grid)


def test_file_order_and_instance_numbers_do_not_matter(tmp_path: Path) -> None:
    write_series(tmp_path / "ordered", supersample=1)
    scrambled = write_series(tmp_path / "scrambled", supersample=1, shuffle_seed=3)
    _edit(scrambled.paths, lambda n, ds: setattr(ds, "InstanceNumber", (n * 17) % 40 + 1))
    ordered, _ = _one_volume(tmp_path / "ordered")
    shuffled, _ = _one_volume(tmp_path / "scrambled")
    assert np.array_equal(sitk.GetArrayFromImage(ordered.image), sitk.GetArrayFromImage(shuffled.image))
    assert ordered.image.GetOrigin() == shuffled.image.GetOrigin()
    assert shuffled.sop_instance_uids == scrambled.sop_uids  # reported in slice order


@pytest.mark.parametrize(("tilt_deg", "orientation"), [(15.0, "axial"), (-12.0, "axial"), (-10.0, "sagittal")])
def test_gantry_tilt_is_measured_and_resampled_onto_an_orthogonal_grid(
    tmp_path: Path, tilt_deg: float, orientation: str
) -> None:
    grid = Grid(gantry_tilt_deg=tilt_deg, orientation=orientation)
    write_series(tmp_path, grid=grid)
    volume, _ = _one_volume(tmp_path)
    assert volume.tilt_deg == pytest.approx(abs(tilt_deg), abs=0.05)
    assert any(f"gantry tilt {abs(tilt_deg):.1f}°" in note and "orthogonal" in note for note in volume.notes)
    direction = np.asarray(volume.image.GetDirection()).reshape(3, 3)
    assert np.allclose(direction, np.column_stack([grid.row_dir, grid.col_dir, grid.normal]), atol=1e-6)
    assert volume.image.GetSpacing()[2] == pytest.approx(grid.slice_step_mm * np.cos(np.deg2rad(tilt_deg)))
    _assert_on_the_phantom(volume, grid)


def test_one_missing_slice_is_interpolated_with_a_note(tmp_path: Path) -> None:
    write_series(tmp_path, missing_slices=[17])
    volume, _ = _one_volume(tmp_path)
    assert volume.slice_count == 39
    assert volume.image.GetSize()[2] == 40 and volume.image.GetSpacing()[2] == pytest.approx(1.5)
    assert any("gap" in note and "3.00 mm" in note for note in volume.notes)
    _assert_on_the_phantom(volume, Grid())


def test_two_adjacent_missing_slices_are_refused_as_a_gap(tmp_path: Path) -> None:
    write_series(tmp_path, missing_slices=[17, 18], supersample=1)
    refusal = _refusal(tmp_path)
    assert refusal.code == SeriesProblemCode.GAP_TOO_LARGE and "4.50 mm" in refusal.reason


def test_the_gap_limit_in_mm_is_honoured(tmp_path: Path) -> None:
    write_series(tmp_path, missing_slices=[17], supersample=1)
    assert _refusal(tmp_path, max_gap_mm=2.0).code == SeriesProblemCode.GAP_TOO_LARGE


def test_variable_spacing_is_resampled_at_the_finest_real_step(tmp_path: Path) -> None:
    offsets = tuple([float(k) for k in range(20)] + [19.0 + 2.0 * k for k in range(1, 15)])
    grid = Grid(slice_offsets_mm=offsets)
    write_series(tmp_path, grid=grid)
    volume, _ = _one_volume(tmp_path)
    assert volume.image.GetSize()[2] == 48 and volume.image.GetSpacing()[2] == pytest.approx(1.0)
    assert any("varies from 1.00 to 2.00 mm" in note for note in volume.notes)
    _assert_on_the_phantom(volume, grid)


def test_localizer_screenshot_corrupt_and_stray_files_are_left_out_with_reasons(tmp_path: Path) -> None:
    written = write_series(
        tmp_path, add_localizer=True, add_secondary_capture=True, add_truncated=True, add_non_dicom=True
    )
    volume, problems = _one_volume(tmp_path)
    assert volume.slice_count == 40 and set(volume.source_names) == {p.name for p in written.paths}
    by_name = {p.name: p for p in problems if isinstance(p, FileProblem)}
    assert {n: by_name[p.name].code for n, p in written.extra_paths.items()} == {
        "localizer": ProblemCode.LOCALIZER,
        "secondary_capture": ProblemCode.SECONDARY_CAPTURE,
        "truncated": ProblemCode.TRUNCATED,
        "non_dicom": ProblemCode.NOT_DICOM,
    }
    _assert_on_the_phantom(volume, Grid())


def test_enhanced_multiframe_ct_equals_the_single_frame_series(tmp_path: Path) -> None:
    write_series(tmp_path / "single", supersample=1)
    write_series(tmp_path / "multi", supersample=1, multiframe=True)
    single, _ = _one_volume(tmp_path / "single")
    multi, _ = _one_volume(tmp_path / "multi")
    assert np.array_equal(sitk.GetArrayFromImage(single.image), sitk.GetArrayFromImage(multi.image))
    for attribute in ("GetOrigin", "GetSpacing", "GetDirection"):
        assert getattr(single.image, attribute)() == pytest.approx(getattr(multi.image, attribute)())


def test_rescale_slope_and_intercept_give_hu(tmp_path: Path) -> None:
    write_series(tmp_path / "plain", supersample=1)
    write_series(tmp_path / "scaled", supersample=1, rescale_slope=0.5, rescale_intercept=-1000.0)
    plain, _ = _one_volume(tmp_path / "plain")
    scaled, _ = _one_volume(tmp_path / "scaled")
    assert scaled.image.GetPixelID() == sitk.sitkFloat32  # half-HU steps do not fit int16
    difference = sitk.GetArrayFromImage(plain.image) - sitk.GetArrayFromImage(scaled.image)
    assert np.abs(difference).max() <= 1.0  # both round the same HU to their own stored step
    assert sitk.GetArrayFromImage(scaled.image).min() == -1000.0


def test_a_copy_of_an_instance_is_reported_once_and_ignored(tmp_path: Path) -> None:
    written = write_series(tmp_path, supersample=1)
    shutil.copy(written.paths[5], tmp_path / "copy.dcm")
    volume, problems = _one_volume(tmp_path)
    assert volume.slice_count == 40
    assert [(p.name, p.code) for p in problems] == [("copy.dcm", ProblemCode.DUPLICATE_SOP_INSTANCE)]


def test_two_encodings_of_one_series_become_one_volume(tmp_path: Path) -> None:
    first = write_series(tmp_path / "a", supersample=1)
    write_series(tmp_path / "b", supersample=1, transfer_syntax=RLELossless, series_uid=first.series_uid)
    volumes, problems = volumes_from_paths(sorted((tmp_path / "a").iterdir()) + sorted((tmp_path / "b").iterdir()))
    assert [v.slice_count for v in volumes] == [40]
    assert len(problems) == 40 and {p.code for p in problems} == {ProblemCode.DUPLICATE_IMAGE}


def test_different_images_at_the_same_positions_split_by_transfer_syntax(tmp_path: Path) -> None:
    first = write_series(tmp_path / "a", supersample=1)
    other = default_phantom((14.0, -28.0, 105.0))  # bone moved: different pixels, same slice positions
    write_series(tmp_path / "b", other, supersample=1, transfer_syntax=RLELossless, series_uid=first.series_uid)
    paths = sorted((tmp_path / "a").iterdir()) + sorted((tmp_path / "b").iterdir())
    volumes, problems = volumes_from_paths(paths)
    assert problems == [] and sorted(v.slice_count for v in volumes) == [40, 40]


def test_different_images_at_the_same_positions_with_nothing_to_tell_them_apart_are_refused(tmp_path: Path) -> None:
    first = write_series(tmp_path / "a", supersample=1)
    other = default_phantom((14.0, -28.0, 105.0))
    write_series(tmp_path / "b", other, supersample=1, series_uid=first.series_uid)
    volumes, problems = volumes_from_paths(sorted((tmp_path / "a").iterdir()) + sorted((tmp_path / "b").iterdir()))
    assert volumes == [] and [p.code for p in problems] == [SeriesProblemCode.DUPLICATE_POSITIONS]


def test_positions_off_their_line_are_refused(tmp_path: Path) -> None:
    written = write_series(tmp_path, supersample=1)

    def shift(n: int, ds: pydicom.Dataset) -> None:
        if n == 20:
            ds.ImagePositionPatient = [ds.ImagePositionPatient[0] + 5.0, *ds.ImagePositionPatient[1:]]

    _edit(written.paths, shift)
    assert _refusal(tmp_path).code == SeriesProblemCode.NOT_ON_A_LINE


def test_images_without_position_are_refused_for_missing_geometry(tmp_path: Path) -> None:
    written = write_series(tmp_path, grid=Grid(slice_count=4), supersample=1)
    _edit(written.paths, lambda n, ds: delattr(ds, "ImagePositionPatient"))
    assert _refusal(tmp_path).code == SeriesProblemCode.MISSING_GEOMETRY


def test_a_single_slice_is_no_volume(tmp_path: Path) -> None:
    write_series(tmp_path, grid=Grid(slice_count=1), supersample=1)
    assert _refusal(tmp_path).code == SeriesProblemCode.TOO_FEW_SLICES


def test_script_in_the_series_description_is_kept_as_text(tmp_path: Path) -> None:
    hostile = "<script>alert(document.cookie)</script>"
    write_series(tmp_path, grid=Grid(slice_count=3), supersample=1, series_description=hostile)
    volume, _ = _one_volume(tmp_path)
    assert type(volume.series_description) is str and volume.series_description == hostile


def test_every_file_pydicom_ships_is_accepted_or_refused_with_a_reason() -> None:
    paths = [Path(p) for p in get_testdata_files()]
    assert len(paths) > 100, "pydicom's test files are missing"
    files = [read_dicom(p, str(p), limits=Limits()) for p in paths]  # directories included
    volumes, problems = volumes_from_files(files)
    accounted: set[str] = {name for v in volumes for name in v.source_names}
    for problem in problems:
        assert problem.code in KNOWN_CODES and problem.reason.strip(), problem
        accounted |= {problem.name} if isinstance(problem, FileProblem) else set(problem.names)
    assert accounted == {str(p) for p in paths}
    assert any(isinstance(f, FileProblem) for f in files) and any(not isinstance(f, FileProblem) for f in files)
