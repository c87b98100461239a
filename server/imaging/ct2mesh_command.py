"""`trinity ct2mesh IN --preset bone --out model.stl|.glb|.3mf`: a CT (DICOM folder or zip) to a printable
model, without a server, through the exact pipeline the `imaging.build_model` job runs.

It prints what it found (every series and why any file or stack was left out), which series it used,
what geometry corrections were made (gantry tilt, gaps), and the model's measurements.
Exit status: 0 a model was written; 2 nothing usable (no volume, empty segmentation, bad arguments).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from server.imaging.archive import ArchiveLimits, ArchiveMember, ArchiveRejected, iter_folder, iter_zip_members
from server.imaging.dicom_files import Limits, read_dicom
from server.imaging.pipeline import EXPORTS, ModelParams, build_model
from server.imaging.segment import HU_PRESETS, SegmentationError
from server.imaging.series import Volume, volumes_from_files
from server.imaging.surface import SurfaceError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "ct2mesh",
        help="CT (DICOM folder or zip) to a printable model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path, help="a folder of DICOM files or a zip")
    p.add_argument("--out", type=Path, required=True, help="model file: .stl, .glb or .3mf")
    p.add_argument("--preset", default="bone", choices=sorted(HU_PRESETS), help="HU range preset (default bone)")
    p.add_argument("--hu-min", type=float, help="custom range lower bound (with --hu-max)")
    p.add_argument("--hu-max", type=float, help="custom range upper bound")
    p.add_argument("--series", help="SeriesInstanceUID to use (default: the volume with the most slices)")
    p.add_argument("--faces", type=int, default=300_000, help="target face count after decimation")
    p.add_argument("--keep", default="largest", choices=("largest", "all", "seed"), help="which components to keep")
    p.add_argument("--seed", help="x,y,z in patient LPS mm: keep the component there (with --keep seed)")
    p.add_argument("--closing-mm", type=float, default=1.0, help="morphological closing radius (0 disables)")
    p.add_argument("--smoothing", type=int, default=20, help="windowed-sinc smoothing iterations (0 disables)")
    p.set_defaults(fn=run)


def _members(path: Path, limits: ArchiveLimits, temp: Path) -> list[tuple[str, bytes | Path]]:
    items = iter_zip_members(path, limits, temp_dir=temp) if path.is_file() else iter_folder(path, limits)
    out: list[tuple[str, bytes | Path]] = []
    for item in items:
        if isinstance(item, ArchiveMember):
            out.append((item.name, item.path if item.path is not None and path.is_dir() else item.read_bytes()))
        else:
            print(f"  skipped {item.name}: {item.message}")
    return out


def choose(volumes: list[Volume], series_uid: str | None) -> Volume | None:
    if series_uid:
        return next((v for v in volumes if v.series_instance_uid == series_uid), None)
    return max(volumes, key=lambda v: v.slice_count, default=None)


def run(args: argparse.Namespace, _settings: Any = None) -> int:
    fmt = args.out.suffix.lower().lstrip(".")
    if fmt not in EXPORTS:
        print(f"error: --out must end in one of {', '.join('.' + f for f in EXPORTS)}", file=sys.stderr)
        return 2
    if args.keep == "seed" and not args.seed:
        print("error: --keep seed needs --seed x,y,z", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as temp:
        print(f"reading {args.input}")
        try:
            members = _members(args.input, ArchiveLimits(), Path(temp))
        except ArchiveRejected as exc:
            print(f"error: {exc.problem.message}", file=sys.stderr)
            return 2
        files = [read_dicom(source, name, limits=Limits()) for name, source in members]
    volumes, problems = volumes_from_files(files)
    for problem in problems:
        print(f"  left out {getattr(problem, 'name', '') or problem.series_instance_uid}: {problem.reason}")
    for listed in volumes:
        size = "x".join(str(n) for n in listed.image.GetSize())
        spacing = ", ".join(f"{s:.3g}" for s in listed.image.GetSpacing())
        print(
            f"  series {listed.series_number} {listed.series_description!r} {listed.modality}: {size} voxels, "
            f"spacing {spacing} mm, uid {listed.series_instance_uid}"
        )
        for note in listed.notes:
            print(f"    {note}")
    volume = choose(volumes, args.series)
    if volume is None:
        print("error: no usable volume" + (f" with series {args.series}" if args.series else ""), file=sys.stderr)
        return 2
    params = ModelParams(
        preset=args.preset,
        hu_min=args.hu_min,
        hu_max=args.hu_max,
        keep=args.keep,
        seed_lps=tuple(float(v) for v in args.seed.split(",")) if args.seed else None,  # type: ignore[arg-type]
        closing_mm=args.closing_mm,
        smoothing_iterations=args.smoothing,
        target_faces=args.faces,
    )
    print(
        f"using series {volume.series_instance_uid}; segmenting {params.preset if params.hu_min is None else 'custom'}"
    )
    try:
        model = build_model(
            volume.image,
            params,
            lambda f, m: print(f"  {m}") if f in (0.0, 0.92) else None,
            name=args.out.stem,
            formats=(fmt,),
        )
    except (SegmentationError, SurfaceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(model.files[fmt])
    r = model.surface.report
    print(
        f"wrote {args.out}: {r.faces} faces, volume {r.volume_mm3 / 1000:.2f} cm³, area {r.area_mm2 / 100:.1f} cm², "
        f"watertight {r.watertight}, bbox LPS {tuple(round(v, 1) for v in r.bbox_min_lps)} to "
        f"{tuple(round(v, 1) for v in r.bbox_max_lps)} mm"
    )
    return 0
