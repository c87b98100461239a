"""A synthetic head CT for the imaging benchmark: 512x512x300 int16 HU, 0.488x0.488x0.8 mm, axial,
centred on LPS (0, 0, 0). A bumpy skull (outer and inner tables, diploe) closed by a skull base with
a foramen magnum, so the brain is open to the outside in 3D; a mandible; cervical vertebrae with
spongy bodies; soft tissue, brain and air; Gaussian noise (sigma 30 HU). Bone is about 5 % of the
voxels, as in a real head CT. Also writes it as an axial CT DICOM series (one file per slice).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE_XYZ = (512, 512, 300)
SPACING_MM = (0.488, 0.488, 0.8)
NOISE_HU = 30.0


def origin_lps() -> tuple[float, float, float]:
    half = [(n - 1) * s / 2 for n, s in zip(SIZE_XYZ, SPACING_MM, strict=True)]
    return (-half[0], -half[1], -half[2])


def _ellipsoid(
    x: np.ndarray, y: np.ndarray, z: float, centre: tuple[float, float, float], axes: tuple[float, float, float]
) -> np.ndarray:
    return ((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2 + ((z - centre[2]) / axes[2]) ** 2


def head_slice(k: int, rng: np.random.Generator) -> np.ndarray:
    """HU of axial slice k (rows along y, columns along x), int16."""
    ox, oy, oz = origin_lps()
    x = ox + np.arange(SIZE_XYZ[0], dtype=np.float32) * SPACING_MM[0]
    y = (oy + np.arange(SIZE_XYZ[1], dtype=np.float32) * SPACING_MM[1])[:, None]
    z = oz + k * SPACING_MM[2]
    x = np.broadcast_to(x[None, :], (SIZE_XYZ[1], SIZE_XYZ[0]))
    hu = np.full(x.shape, -1000.0, dtype=np.float32)
    skull_centre = (0.0, 0.0, 25.0)
    hu[_ellipsoid(x, y, z, (0.0, 0.0, 15.0), (82.0, 102.0, 112.0)) < 1] = 40.0  # scalp, face
    if z < -50:
        hu[((x / 58.0) ** 2 + ((y - 10.0) / 62.0) ** 2) < 1] = 40.0  # neck
    # the skull's surfaces are bumpy: a few % of the radius, as sutures and muscle ridges
    angle = np.arctan2(y - skull_centre[1], x - skull_centre[0])
    bump = 1.0 + 0.012 * np.sin(7 * angle) * np.cos(0.09 * (z - skull_centre[2]))
    outer = _ellipsoid(x, y, z, skull_centre, (72.0, 92.0, 95.0)) * bump
    inner = _ellipsoid(x, y, z, skull_centre, (64.0, 84.0, 87.0)) * bump
    middle = _ellipsoid(x, y, z, skull_centre, (68.0, 88.0, 91.0)) * bump
    above_base = z > -38.0
    shell = (outer < 1) & (inner >= 1) & above_base
    hu[shell] = 1500.0  # cortical tables
    diploe = shell & (np.abs(middle - 1) < 0.035)
    hu[diploe] = 650.0 + rng.normal(0, 90, int(diploe.sum())).astype(np.float32)
    hu[(inner < 1) & above_base] = 35.0  # brain
    if -46.0 < z <= -38.0:  # skull base with a foramen magnum
        base = (outer < 1.02) & ~((x / 17.0) ** 2 + ((y - 12.0) / 20.0) ** 2 < 1)
        hu[base] = 1300.0
    if -78.0 < z < -46.0:  # mandible: a tube around the anterior half of an ellipse
        ring = np.hypot(x / 46.0, (y + 18.0) / 56.0)
        tube = (np.abs(ring - 1.0) * 50.0) ** 2 + ((z + 62.0) / 1.6) ** 2 < 100.0
        tube &= y < -5.0
        hu[tube] = 1400.0
        marrow = tube & ((np.abs(ring - 1.0) * 50.0) ** 2 + ((z + 62.0) / 1.6) ** 2 < 30.0)
        hu[marrow] = 420.0
    if z < -46.0:  # cervical vertebrae: bodies 14 mm high with 4 mm discs
        body = (x / 10.0) ** 2 + ((y - 18.0) / 9.0) ** 2 < 1
        if (z + 46.0) % 18.0 < -4.0 or (z + 46.0) % 18.0 > 4.0:
            hu[body] = 1200.0
            spongy = (x / 8.8) ** 2 + ((y - 18.0) / 7.8) ** 2 < 1
            hu[spongy] = 330.0 + rng.normal(0, 110, int(spongy.sum())).astype(np.float32)
        else:
            hu[body] = 90.0
        arch = (np.abs(np.hypot(x / 14.0, (y - 30.0) / 10.0) - 1.0) < 0.2) & (y > 26.0)
        hu[arch] = 1100.0
    hu += rng.normal(0, NOISE_HU, hu.shape).astype(np.float32)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16)


def write_volume(path: Path, seed: int = 7) -> np.ndarray:
    """The volume as a z,y,x .npy file (memory-mapped while written); returns the open memmap."""
    rng = np.random.default_rng(seed)
    shape = (SIZE_XYZ[2], SIZE_XYZ[1], SIZE_XYZ[0])
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.int16, shape=shape)
    for k in range(shape[0]):
        out[k] = head_slice(k, rng)
    out.flush()
    return out


def write_dicom_series(volume_zyx: np.ndarray, folder: Path) -> list[Path]:
    """One CT file per axial slice, explicit VR little endian, signed 16-bit, HU = stored value."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    ox, oy, oz = origin_lps()
    paths = []
    for k, plane in enumerate(volume_zyx):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = uid = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, uid
        ds.Modality, ds.ImageType = "CT", ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientName, ds.PatientID = "Bench^Head", "BENCH"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.ImagePositionPatient = [ox, oy, oz + k * SPACING_MM[2]]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [SPACING_MM[1], SPACING_MM[0]]
        ds.SliceThickness = SPACING_MM[2]
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        ds.PixelData = np.ascontiguousarray(plane, dtype="<i2").tobytes()
        path = folder / f"CT{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
