"""write_volume / read_volume: NRRD and NIfTI keep the voxels and the LPS geometry; NIfTI is RAS on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from server.imaging.series import Volume, volumes_from_paths
from server.imaging.volume_io import read_volume, write_volume
from tests.support.phantoms import Grid, write_series
from tests.support.volume_checks import nifti_sform

GRID = Grid(rows=32, columns=40, slice_count=12, orientation=(0.9, 0.1, 0.2, -0.1, 0.95, 0.3), gantry_tilt_deg=8.0)


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Volume:
    folder = tmp_path_factory.mktemp("series")
    write_series(folder, grid=GRID, supersample=1, series_description="<script>x</script> bone")
    volumes, _ = volumes_from_paths(sorted(folder.iterdir()))
    assert len(volumes) == 1
    return volumes[0]


def _lps_affine(image: sitk.Image) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return affine


def test_nrrd_round_trips_voxels_geometry_and_series_attributes_exactly(volume: Volume, tmp_path: Path) -> None:
    path = tmp_path / "bone.nrrd"
    write_volume(volume, path)
    back = read_volume(path)
    assert back.image.GetPixelID() == volume.image.GetPixelID()
    assert np.array_equal(sitk.GetArrayFromImage(back.image), sitk.GetArrayFromImage(volume.image))
    # NRRD stores direction x spacing as doubles: exact up to the last bit of the product.
    assert np.abs(_lps_affine(back.image) - _lps_affine(volume.image)).max() < 1e-12
    assert back.image.GetSpacing() == pytest.approx(volume.image.GetSpacing(), abs=1e-12)
    assert (back.series_instance_uid, back.series_description, back.notes, back.tilt_deg) == (
        volume.series_instance_uid,
        volume.series_description,
        volume.notes,
        volume.tilt_deg,
    )


@pytest.mark.parametrize("name", ["bone.nii", "bone.nii.gz"])
def test_nifti_round_trips_voxels_and_lps_geometry(volume: Volume, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    write_volume(volume, path)
    back = read_volume(path)
    assert np.array_equal(sitk.GetArrayFromImage(back.image), sitk.GetArrayFromImage(volume.image))
    assert np.abs(_lps_affine(back.image) - _lps_affine(volume.image)).max() < 1e-4  # float32 affine on disk


def test_nifti_on_disk_is_ras(volume: Volume, tmp_path: Path) -> None:
    path = tmp_path / "bone.nii"
    write_volume(volume, path)
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    assert np.abs(nifti_sform(path) - lps_to_ras @ _lps_affine(volume.image)).max() < 1e-4


def test_unknown_suffix_is_refused(volume: Volume, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="volumes are written as"):
        write_volume(volume, tmp_path / "bone.stl")
