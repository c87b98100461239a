"""From read files to volumes: group frames into stacks, sort them along the normal, rescale to HU, and
build a SimpleITK image whose geometry comes only from every slice's own position and orientation.

`volumes_from_files` is the single entry point. A stack is one SeriesInstanceUID, SeriesNumber,
matrix size, pixel spacing and orientation; when frames still share a position, the first attribute
that separates them (transfer syntax, echo, temporal position, acquisition, image type) splits the
stack, since one series UID can hold several encodings or echoes of the same slices.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from server.imaging.dicom_files import DicomFile, FileProblem, Limits, ProblemCode, read_dicom
from server.imaging.geometry import (
    ORIENTATION_TOLERANCE,
    POSITION_TOLERANCE_MM,
    SeriesGeometryError,
    SeriesProblemCode,
    StackLayout,
    analyse_stack,
    axes_from_orientation,
    output_grid,
)
from server.imaging.planes import FramePlane
from server.imaging.reslice import reslice

_SPLITTERS = ("TransferSyntaxUID", "EchoNumbers", "TemporalPositionIdentifier", "AcquisitionNumber", "ImageType")


@dataclass(frozen=True)
class VolumeLimits:
    """When to refuse a stack rather than interpolate it (the server maps its settings here)."""

    max_gap_factor: float = 2.5  # widest step / usual step: 2 = one missing slice is interpolated
    max_gap_mm: float = 5.0
    max_voxels: int = 1024 * 1024 * 1024


@dataclass
class Volume:
    """HU on an orthogonal grid. `image` origin/spacing/direction are LPS mm; its numpy view is (z, y, x)."""

    image: sitk.Image
    series_instance_uid: str
    series_number: int | None
    series_description: str
    modality: str
    study_instance_uid: str
    slice_count: int
    sop_instance_uids: list[str]
    source_names: list[str]
    tilt_deg: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SeriesProblem:
    """A stack of images that could not become a volume."""

    series_instance_uid: str
    series_number: int | None
    code: SeriesProblemCode
    reason: str
    names: tuple[str, ...] = ()


Problem = FileProblem | SeriesProblem


@dataclass(frozen=True)
class _Frame:
    file: DicomFile
    index: int

    @property
    def plane(self) -> FramePlane:
        return self.file.planes[self.index]


def volumes_from_paths(
    paths: Sequence[Path], *, limits: Limits | None = None, volume_limits: VolumeLimits | None = None
) -> tuple[list[Volume], list[Problem]]:
    """read_dicom every path (named by its file name), then volumes_from_files."""
    files = [read_dicom(p, p.name, limits=limits or Limits()) for p in paths]
    return volumes_from_files(files, limits=volume_limits)


def volumes_from_files(
    files: Iterable[DicomFile | FileProblem], *, limits: VolumeLimits | None = None
) -> tuple[list[Volume], list[Problem]]:
    """Every volume the files make, and every file or stack that made none (FileProblems pass through)."""
    limits = limits or VolumeLimits()
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    frames: list[_Frame] = []
    for item in files:
        if isinstance(item, FileProblem):
            problems.append(item)
            continue
        if item.sop_instance_uid and item.sop_instance_uid in seen:
            problems.append(
                FileProblem(
                    item.name,
                    ProblemCode.DUPLICATE_SOP_INSTANCE,
                    f"same SOPInstanceUID as {seen[item.sop_instance_uid]}; ignored",
                    item.sop_instance_uid,
                    item.series_instance_uid,
                )
            )
            continue
        seen[item.sop_instance_uid] = item.name
        frames.extend(_Frame(item, i) for i in range(len(item.planes)))
    volumes: list[Volume] = []
    for stack in _stacks(frames, problems):
        try:
            volumes.append(_build(stack, limits))
        except SeriesGeometryError as exc:
            problems.append(_series_problem(stack, exc.code, exc.reason))
    return volumes, problems


def _series_problem(stack: list[_Frame], code: SeriesProblemCode, reason: str) -> SeriesProblem:
    first = stack[0].file
    names = tuple(dict.fromkeys(f.file.name for f in stack))
    return SeriesProblem(first.series_instance_uid, first.series_number, code, reason, names)


def _stacks(frames: list[_Frame], problems: list[Problem]) -> list[list[_Frame]]:
    """Frames grouped by series, matrix, pixel spacing and orientation, then separated where they repeat
    positions. Frames without geometry are refused per series."""
    groups: list[tuple[tuple[object, ...], np.ndarray, list[_Frame]]] = []
    missing: dict[tuple[str, int | None], list[_Frame]] = {}
    for frame in frames:
        plane, file = frame.plane, frame.file
        series = (file.series_instance_uid, file.series_number)
        if plane.position_lps is None or plane.orientation is None or plane.pixel_spacing_mm is None:
            missing.setdefault(series, []).append(frame)
            continue
        key = (*series, file.rows, file.columns, tuple(round(v, 4) for v in plane.pixel_spacing_mm))
        orientation = np.asarray(plane.orientation)
        for group_key, group_orientation, members in groups:
            if group_key == key and np.abs(group_orientation - orientation).max() < ORIENTATION_TOLERANCE:
                members.append(frame)
                break
        else:
            groups.append((key, orientation, [frame]))
    for stack in missing.values():
        reason = f"{len(stack)} image(s) lack ImagePositionPatient, ImageOrientationPatient or PixelSpacing"
        problems.append(_series_problem(stack, SeriesProblemCode.MISSING_GEOMETRY, reason))
    stacks: list[list[_Frame]] = []
    for _, _, members in groups:
        stacks.extend(_separate(members, problems))
    return stacks


def _normal_offsets(stack: list[_Frame]) -> np.ndarray:
    normal = axes_from_orientation(stack[0].plane.orientation)[2]  # type: ignore[arg-type]
    return np.array([np.asarray(f.plane.position_lps) @ normal for f in stack])


def _has_duplicates(stack: list[_Frame]) -> bool:
    offsets = np.sort(_normal_offsets(stack))
    return len(offsets) > 1 and bool(np.diff(offsets).min() < POSITION_TOLERANCE_MM)


def _separate(stack: list[_Frame], problems: list[Problem]) -> list[list[_Frame]]:
    """Frames sharing a position: drop exact repeats (same pixels), then split what remains by the first
    attribute that tells the stacks apart; refuse when nothing does."""
    if not _has_duplicates(stack):
        return [stack]
    stack = _drop_repeats(stack, problems)
    if not _has_duplicates(stack):
        return [stack]
    for attribute in _SPLITTERS:
        parts: dict[str, list[_Frame]] = {}
        for frame in stack:
            parts.setdefault(frame.file.discriminators.get(attribute, ""), []).append(frame)
        if len(parts) > 1 and min(len(part) for part in parts.values()) > 1:
            return [s for part in parts.values() for s in _separate(part, problems)]
    reason = "different images share one slice position and no attribute tells the stacks apart"
    problems.append(_series_problem(stack, SeriesProblemCode.DUPLICATE_POSITIONS, reason))
    return []


def _drop_repeats(stack: list[_Frame], problems: list[Problem]) -> list[_Frame]:
    kept: list[_Frame] = []
    kept_offsets: list[float] = []
    repeated: dict[str, str] = {}
    for frame, offset in sorted(zip(stack, _normal_offsets(stack), strict=True), key=lambda pair: pair[1]):
        twins = [k for k, o in zip(kept, kept_offsets, strict=True) if abs(o - offset) < POSITION_TOLERANCE_MM]
        twin = next((k for k in twins if np.array_equal(k.file.pixels[k.index], frame.file.pixels[frame.index])), None)
        if twin is None:
            kept.append(frame)
            kept_offsets.append(float(offset))
        elif frame.file.name not in repeated:
            repeated[frame.file.name] = twin.file.name
            problems.append(
                FileProblem(
                    frame.file.name,
                    ProblemCode.DUPLICATE_IMAGE,
                    f"repeats the positions and pixels of {twin.file.name}; ignored",
                    frame.file.sop_instance_uid,
                    frame.file.series_instance_uid,
                )
            )
    return kept


def _hu_stack(stack: list[_Frame], layout: StackLayout) -> tuple[np.ndarray, bool]:
    """Sorted (n, rows, columns) HU and whether every value is a whole number. Whole-number HU that fit
    int16 (CT) are written into an int16 stack slice by slice: no float32 copy of the whole volume."""
    ordered = [stack[int(i)] for i in layout.order]
    integral = np.issubdtype(ordered[0].file.pixels.dtype, np.integer) and all(
        float(f.plane.rescale_slope).is_integer() and float(f.plane.rescale_intercept).is_integer() for f in ordered
    )
    dtype: type[np.generic] = np.float32
    if integral:
        ends = []
        for frame in ordered:
            pixels = frame.file.pixels[frame.index]
            slope, intercept = int(frame.plane.rescale_slope), int(frame.plane.rescale_intercept)
            ends += [int(pixels.min()) * slope + intercept, int(pixels.max()) * slope + intercept]
        info = np.iinfo(np.int16)
        dtype = np.int16 if info.min <= min(ends) and max(ends) <= info.max else np.float32
    hu = np.empty((len(ordered), ordered[0].file.rows, ordered[0].file.columns), dtype=dtype)
    for k, frame in enumerate(ordered):
        plane, pixels = frame.plane, frame.file.pixels[frame.index]
        if dtype is np.int16:
            hu[k] = pixels.astype(np.int32) * int(plane.rescale_slope) + int(plane.rescale_intercept)
        else:
            hu[k] = pixels * np.float32(plane.rescale_slope) + np.float32(plane.rescale_intercept)
    return hu, integral


def _build(stack: list[_Frame], limits: VolumeLimits) -> Volume:
    first = stack[0]
    orientation, spacing_mm = first.plane.orientation, first.plane.pixel_spacing_mm
    assert orientation is not None and spacing_mm is not None  # _stacks keeps only frames with geometry
    positions = np.array([f.plane.position_lps for f in stack], dtype=np.float64)
    layout = analyse_stack(
        positions,
        orientation,
        spacing_mm,
        max_gap_factor=limits.max_gap_factor,
        max_gap_mm=limits.max_gap_mm,
    )
    grid = output_grid(layout, first.file.columns, first.file.rows)
    if int(np.prod(grid.size)) > limits.max_voxels:
        reason = f"volume of {grid.size} voxels exceeds the limit of {limits.max_voxels}"
        raise SeriesGeometryError(SeriesProblemCode.TOO_LARGE, reason)
    hu, integral = _hu_stack(stack, layout)
    notes = list(dict.fromkeys(note for f in stack for note in f.file.notes))
    notes += _geometry_notes(layout, grid.size, (first.file.columns, first.file.rows))
    if layout.sheared or not layout.uniform:
        hu = reslice(hu.astype(np.float32, copy=False), layout, grid, fill_hu=float(hu.min()))
        if integral:
            hu = np.rint(hu)
    image = sitk.GetImageFromArray(_narrow(hu, integral))
    image.SetOrigin(tuple(float(v) for v in grid.origin_lps))
    image.SetSpacing(tuple(float(v) for v in grid.spacing_mm))
    image.SetDirection(tuple(float(v) for v in grid.axes.T.flatten()))
    ordered = [stack[int(i)] for i in layout.order]
    return Volume(
        image=image,
        series_instance_uid=first.file.series_instance_uid,
        series_number=first.file.series_number,
        series_description=first.file.series_description,
        modality=first.file.modality,
        study_instance_uid=first.file.study_instance_uid,
        slice_count=len(stack),
        sop_instance_uids=list(dict.fromkeys(f.file.sop_instance_uid for f in ordered)),
        source_names=list(dict.fromkeys(f.file.name for f in ordered)),
        tilt_deg=layout.tilt_deg if layout.sheared else 0.0,
        notes=notes,
    )


def _narrow(hu: np.ndarray, integral: bool) -> np.ndarray:
    """int16 when HU are whole numbers that fit (CT), else float32."""
    if integral and hu.size and hu.min() >= np.iinfo(np.int16).min and hu.max() <= np.iinfo(np.int16).max:
        return hu.astype(np.int16, copy=False)
    return hu.astype(np.float32, copy=False)


def _geometry_notes(layout: StackLayout, size: tuple[int, int, int], source: tuple[int, int]) -> list[str]:
    notes = []
    if layout.sheared:
        notes.append(
            f"gantry tilt {layout.tilt_deg:.1f}° measured from the slice positions; resampled onto an "
            f"orthogonal grid ({size[0]}x{size[1]} pixels per slice, was {source[0]}x{source[1]})"
        )
    if not layout.uniform:
        steps = layout.steps_mm
        median = float(np.median(steps))
        gaps = int((steps > 1.5 * median).sum())
        described = f"slice spacing varies from {steps.min():.2f} to {steps.max():.2f} mm"
        if gaps:
            described += f" ({gaps} gap(s) wider than 1.5x the usual {median:.2f} mm step)"
        notes.append(
            f"{described}; resampled to {size[2]} slices at equal spacing, interpolated along the "
            "normal from the real positions"
        )
    return notes
