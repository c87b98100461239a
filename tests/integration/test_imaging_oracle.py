"""Our volumes against an independent converter: dcm2niix (run on our phantoms) and its reference output
for the nine-encoding Siemens mosaic in shared/dicom-samples/dcm_qa_ts.

Grids are compared after both images are permuted/flipped to one orientation code (dcm2niix flips rows),
to 0.01 mm and 1e-4 in the direction cosines. dcm2niix resamples tilted or unevenly spaced series into
extra files (_Tilt_1, _Eq_1) only for signed 16-bit data, so those phantoms are written signed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import ImplicitVRLittleEndian, JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless, RLELossless

from server.imaging.dicom_files import ProblemCode
from server.imaging.series import Volume, volumes_from_paths
from tests.support.phantoms import Grid, default_phantom, write_series
from tests.support.volume_checks import grid_differences, nifti_sform, oriented_alike

ROOT = Path(__file__).resolve().parents[2]
DCM2NIIX = ROOT / ".venv" / "bin" / "dcm2niix"
QA_TS = ROOT / ".." / "shared" / "dicom-samples" / "dcm_qa_ts"
OBLIQUE_IOP = (0.9, 0.1, 0.2, -0.1, 0.95, 0.3)


def _dcm2niix(series: Path, out: Path) -> list[Path]:
    if not DCM2NIIX.is_file():
        pytest.fail(f"dcm2niix is missing at {DCM2NIIX}: install the dev extras")
    out.mkdir()
    done = subprocess.run([str(DCM2NIIX), "-z", "n", "-f", "%s", "-o", str(out), str(series)], capture_output=True)
    assert done.returncode == 0, done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
    return sorted(out.glob("*.nii"))


def _ours(folder: Path) -> Volume:
    volumes, problems = volumes_from_paths(sorted(folder.iterdir()))
    assert len(volumes) == 1, problems
    return volumes[0]


def _assert_same_grid(ours: sitk.Image, theirs: sitk.Image) -> None:
    origin_mm, spacing_mm, direction = grid_differences(ours, theirs)
    assert origin_mm < 0.01 and spacing_mm < 0.01 and direction < 1e-4, (origin_mm, spacing_mm, direction)


def _voxel_difference(ours: sitk.Image, theirs: sitk.Image) -> float:
    a, b = oriented_alike(ours, theirs)
    return float(np.abs(sitk.GetArrayFromImage(a).astype(float) - sitk.GetArrayFromImage(b).astype(float)).max())


PLAIN = {
    "shuffled axial": {"shuffle_seed": 5},
    "coronal": {"grid": Grid(orientation="coronal")},
    "sagittal": {"grid": Grid(orientation="sagittal")},
    "oblique": {"grid": Grid(orientation=OBLIQUE_IOP)},
    "enhanced multi-frame": {"multiframe": True},
    "rescaled": {"rescale_slope": 0.5, "rescale_intercept": -1000.0},
    "implicit VR": {"transfer_syntax": ImplicitVRLittleEndian},
    "RLE": {"transfer_syntax": RLELossless},
    "JPEG 2000 lossless": {"transfer_syntax": JPEG2000Lossless},
    "JPEG lossless": {"transfer_syntax": JPEGLosslessSV1},
    "JPEG-LS lossless": {"transfer_syntax": JPEGLSLossless},
}


@pytest.mark.parametrize("case", PLAIN)
def test_geometry_and_voxels_agree_with_dcm2niix(tmp_path: Path, case: str) -> None:
    write_series(tmp_path / "dicom", supersample=1, **PLAIN[case])  # type: ignore[arg-type]
    (nifti,) = _dcm2niix(tmp_path / "dicom", tmp_path / "nifti")
    ours, theirs = _ours(tmp_path / "dicom"), sitk.ReadImage(str(nifti))
    _assert_same_grid(ours.image, theirs)
    assert _voxel_difference(ours.image, theirs) < 1e-3


RESAMPLED = {
    "gantry tilt 15°": ({"grid": Grid(gantry_tilt_deg=15.0)}, "_Tilt_"),
    "missing slice": ({"missing_slices": [17]}, "_Eq_"),
    "variable spacing": (
        {"grid": Grid(slice_offsets_mm=tuple([k * 1.0 for k in range(20)] + [19.0 + 2 * k for k in range(1, 15)]))},
        "_Eq_",
    ),
}


@pytest.mark.parametrize("case", RESAMPLED)
def test_resampled_grids_agree_with_dcm2niix_resliced_output(tmp_path: Path, case: str) -> None:
    options, suffix = RESAMPLED[case]
    write_series(tmp_path / "dicom", supersample=1, signed=True, rescale_intercept=0.0, **options)  # type: ignore[arg-type]
    resliced = [p for p in _dcm2niix(tmp_path / "dicom", tmp_path / "nifti") if suffix in p.name]
    assert len(resliced) == 1, f"dcm2niix wrote no {suffix} file"
    ours, theirs = _ours(tmp_path / "dicom"), sitk.ReadImage(str(resliced[0]))
    _assert_same_grid(ours.image, theirs)
    assert _voxel_difference(ours.image, theirs) <= 1.0  # both interpolate linearly, then round to whole HU


def _bone_centroid_lps(image: sitk.Image) -> np.ndarray:
    hu = sitk.GetArrayFromImage(image).astype(float)
    fraction = np.clip(hu / 1000.0, 0.0, 1.0).reshape(-1)
    matrix = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())
    z, y, x = np.meshgrid(*[np.arange(n) for n in hu.shape], indexing="ij")
    points = (np.asarray(image.GetOrigin()) + np.stack([x, y, z], axis=-1) @ matrix.T).reshape(-1, 3)
    return (points * fraction[:, None]).sum(axis=0) / fraction.sum()


@pytest.mark.parametrize("tilt_deg", [15.0, -12.0])
def test_measured_tilt_agrees_with_dcm2niix_and_bone_sits_at_the_analytic_centre(
    tmp_path: Path, tilt_deg: float
) -> None:
    """dcm2niix keeps the tilted slices unresliced with the shear in the NIfTI sform; the angle between
    its slice step and its in-plane normal is its tilt measurement. Its placement is no oracle here: that
    sform steps by the perpendicular spacing (1.5 mm x cos 15° instead of 1.5 mm), and its _Tilt_1 file for
    a negative tilt puts the bone ~6 mm from the phantom, so placement is checked against the analytic
    phantom instead."""
    grid = Grid(gantry_tilt_deg=tilt_deg)
    write_series(tmp_path / "dicom", signed=True, rescale_intercept=0.0, grid=grid)
    (sheared,) = [p for p in _dcm2niix(tmp_path / "dicom", tmp_path / "nifti") if "_Tilt_" not in p.name]
    affine_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ nifti_sform(sheared)  # NIfTI is RAS on disk
    in_plane_normal = np.cross(affine_lps[:3, 0], affine_lps[:3, 1])
    step = affine_lps[:3, 2]
    cosine = abs(step @ in_plane_normal) / np.linalg.norm(step) / np.linalg.norm(in_plane_normal)
    ours = _ours(tmp_path / "dicom")
    assert ours.tilt_deg == pytest.approx(np.degrees(np.arccos(cosine)), abs=0.01)
    truth_lps = default_phantom(grid.centre_lps).bone_centroid_lps
    assert np.linalg.norm(_bone_centroid_lps(ours.image) - truth_lps) < 0.1


def _qa_files() -> list[Path]:
    files = sorted((QA_TS / "In").glob("*.dcm"))
    if len(files) != 9:
        pytest.fail(f"expected the nine dcm_qa_ts files in {QA_TS / 'In'}, found {len(files)}")
    return files


def test_nine_encodings_of_the_siemens_mosaic_match_dcm2niix_reference() -> None:
    volumes, problems = volumes_from_paths(_qa_files())
    assert problems == [] and sorted(v.series_number for v in volumes) == list(range(1, 10))
    arrays = []
    for volume in volumes:
        reference = sitk.ReadImage(str(QA_TS / "Ref" / f"{volume.series_number}.nii"))
        assert volume.image.GetSize() == (64, 64, 35)
        _assert_same_grid(volume.image, reference)
        assert _voxel_difference(volume.image, reference) == 0.0
        assert any("mosaic of 35 tiles" in note for note in volume.notes)
        arrays.append(sitk.GetArrayFromImage(volume.image))
    assert all(np.array_equal(arrays[0], a) for a in arrays[1:])


def test_nine_encodings_sharing_uid_position_and_series_number_give_one_volume(tmp_path: Path) -> None:
    """The trap: one SeriesInstanceUID and position for nine encodings. Even with one SeriesNumber, the
    repeats are recognised as the same image rather than stacked as 315 slices."""
    for path in _qa_files():
        data = bytearray(path.read_bytes())
        offset = pydicom.dcmread(path, stop_before_pixels=True).get_item(0x00200011).value_tell
        data[offset : offset + 2] = b"1 "  # SeriesNumber "N " -> "1 ", same length, any byte order
        (tmp_path / path.name).write_bytes(bytes(data))
    volumes, problems = volumes_from_paths(sorted(tmp_path.iterdir()))
    assert [v.slice_count for v in volumes] == [35]
    assert len(problems) == 8 and {p.code for p in problems} == {ProblemCode.DUPLICATE_IMAGE}
