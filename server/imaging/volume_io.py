"""Writing and reading a Volume as NRRD or NIfTI with SimpleITK.

Geometry stays LPS in memory either way: NRRD is written with space "left-posterior-superior" and
doubles; NIfTI is RAS on disk, and SimpleITK flips x and y on write and back on read (its affine is
float32, so NIfTI round-trips geometry to ~1e-5 mm, NRRD exactly). NRRD also keeps the series
attributes and notes as `trinity.*` header fields; NIfTI keeps only geometry and voxels.
"""

from __future__ import annotations

import json
from pathlib import Path

import SimpleITK as sitk

from server.imaging.series import Volume

_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz")
_KEYS = ("series_instance_uid", "series_description", "modality", "study_instance_uid")


def _check_suffix(path: Path) -> None:
    if not path.name.lower().endswith(_SUFFIXES):
        raise ValueError(f"{path.name}: volumes are written as {', '.join(_SUFFIXES)}")


def write_volume(volume: Volume, path: Path, *, compress: bool = True) -> None:
    """Write volume.image to path; the format follows the suffix (.nrrd, .nii, .nii.gz)."""
    _check_suffix(path)
    image = sitk.Image(volume.image)  # a copy: metadata is added for the file only
    if path.name.lower().endswith((".nrrd", ".nhdr")):
        for key in _KEYS:
            image.SetMetaData(f"trinity.{key}", json.dumps(getattr(volume, key)))
        image.SetMetaData("trinity.series_number", json.dumps(volume.series_number))
        image.SetMetaData("trinity.notes", json.dumps(volume.notes))
        image.SetMetaData("trinity.tilt_deg", json.dumps(volume.tilt_deg))
    sitk.WriteImage(image, str(path), useCompression=compress)


def read_volume(path: Path) -> Volume:
    """Read a volume written by write_volume (or any NRRD/NIfTI); geometry in LPS mm."""
    _check_suffix(path)
    image = sitk.ReadImage(str(path))
    meta: dict[str, object] = {}
    for key in image.GetMetaDataKeys():
        if key.startswith("trinity."):
            try:
                meta[key.removeprefix("trinity.")] = json.loads(image.GetMetaData(key))
            except json.JSONDecodeError:
                continue
    for key in list(image.GetMetaDataKeys()):
        image.EraseMetaData(key)
    notes = meta.get("notes")
    series_number = meta.get("series_number")
    return Volume(
        image=image,
        series_instance_uid=str(meta.get("series_instance_uid", "")),
        series_number=series_number if isinstance(series_number, int) else None,
        series_description=str(meta.get("series_description", "")),
        modality=str(meta.get("modality", "")),
        study_instance_uid=str(meta.get("study_instance_uid", "")),
        slice_count=image.GetSize()[2] if image.GetDimension() == 3 else 1,
        sop_instance_uids=[],
        source_names=[path.name],
        tilt_deg=float(meta.get("tilt_deg", 0.0)),  # type: ignore[arg-type]
        notes=[str(n) for n in notes] if isinstance(notes, list) else [],
    )
