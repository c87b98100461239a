"""`trinity mesh ...`: the design operations on files, through the same `run_operation` the jobs use.

    trinity mesh info FILE
    trinity mesh repair IN OUT [--keep largest|all|0,2] [--no-fill-holes]
    trinity mesh cut IN --plane X,Y,Z,NX,NY,NZ --out-dir DIR
    trinity mesh wedge IN --plane ... --plane ... --out-dir DIR      (normals point into the wedge)
    trinity mesh mirror IN --plane ... OUT [--align-to TARGET [--region JSON] [--max-distance MM]]
    trinity mesh boolean union|difference|intersection A B OUT
    trinity mesh guide BONE --region JSON --trajectory JSON [--trajectory JSON] OUT [--label TEXT --label-at X,Y,Z]
    trinity mesh decimate IN --faces N OUT
    trinity mesh smooth IN OUT [--iterations N]
    trinity mesh remesh IN --max-edge MM OUT

Coordinates are patient LPS millimetres. Formats follow the file names (.stl .obj .ply .glb .3mf;
outputs .stl .ply .glb .3mf). Each command prints a JSON document: the report, the files written with
their sha256, and (with --provenance FILE) writes the provenance record. Errors end the command with
the error's message (the `trinity` command exits 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from server.design.errors import InvalidDesignParameters
from server.design.meshes import EXPORT_FORMATS, MeshLimits, format_from_name
from server.design.operations import DEFAULT_FORMAT, InputArtifact, OperationRun, run_operation


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    mesh = sub.add_parser(
        "mesh",
        help="design operations on mesh files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = mesh.add_subparsers(dest="mesh_command", required=True)

    p = _command(
        commands, "info", "analysis report: watertight, manifold, volume, components, wall thickness", run_info
    )
    p.add_argument("file", type=Path)
    p.add_argument("--thickness-samples", type=int, default=256)

    p = _command(commands, "repair", "merge, drop bad faces, fix winding and normals, fill holes", run_repair)
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--keep", default="all", help="all, largest, or component indices like 0,2")
    p.add_argument("--no-fill-holes", action="store_true")
    p.add_argument("--max-hole-edges", type=int, default=2000)
    p.add_argument("--min-component-volume", type=float, default=0.0, help="mm³")

    p = _command(commands, "cut", "plane cut, both pieces capped", run_cut)
    p.add_argument("input", type=Path)
    p.add_argument("--plane", required=True, help="X,Y,Z,NX,NY,NZ: a point and the normal (towards 'positive')")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--format", choices=EXPORT_FORMATS, help="output format (default: the input's, else ply)")

    p = _command(commands, "wedge", "wedge resection between two planes", run_wedge)
    p.add_argument("input", type=Path)
    p.add_argument(
        "--plane", action="append", required=True, help="X,Y,Z,NX,NY,NZ, twice; normals point into the wedge"
    )
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--format", choices=EXPORT_FORMATS)

    p = _command(commands, "mirror", "mirror across a plane, optionally align (ICP) onto a target", run_mirror)
    p.add_argument("input", type=Path)
    p.add_argument("--plane", required=True, help="X,Y,Z,NX,NY,NZ")
    p.add_argument("output", type=Path)
    p.add_argument("--align-to", type=Path, help="target mesh for ICP")
    p.add_argument("--region", help='JSON sphere of the target to match, e.g. {"center_lps": [x,y,z], "radius_mm": 30}')
    p.add_argument("--max-distance", type=float, help="ignore ICP pairs farther apart (mm)")
    p.add_argument("--max-iterations", type=int, default=100)

    p = _command(commands, "boolean", "union, difference or intersection of two solids", run_boolean)
    p.add_argument("op", choices=("union", "difference", "intersection"))
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("output", type=Path)

    p = _command(commands, "guide", "patient-specific guide plate with drill sleeves", run_guide)
    p.add_argument("bone", type=Path)
    p.add_argument(
        "--region",
        required=True,
        help='JSON: {"center_lps": [...], "radius_mm": r} or {"points_lps": [[...], ...], "view_direction_lps": [...]}',
    )
    p.add_argument(
        "--trajectory",
        action="append",
        required=True,
        help='JSON: {"entry_lps": [...], "target_lps": [...], "diameter_mm": d}',
    )
    p.add_argument("output", type=Path)
    p.add_argument("--clearance", type=float, help="mm between bone and plate (default 0.2)")
    p.add_argument("--thickness", type=float, help="plate thickness mm (default 3)")
    p.add_argument("--sleeve-length", type=float, help="mm from the entry point to the sleeve top (default 15)")
    p.add_argument("--sleeve-wall", type=float, help="mm (default 2)")
    p.add_argument("--drill-clearance", type=float, help="added to the drill diameter, mm (default 0.2)")
    p.add_argument("--resolution", type=float, help="grid edge of the plate's distance field, mm (default 0.4)")
    p.add_argument("--label", help="text embossed on the plate: A-Z 0-9 - . / (with --label-at)")
    p.add_argument("--label-at", help="X,Y,Z on the bone under the plate where the label is centred")
    p.add_argument("--label-height", type=float, default=4.0, help="letter height, mm (default 4)")

    p = _command(commands, "decimate", "quadric decimation, kept watertight", run_decimate)
    p.add_argument("input", type=Path)
    p.add_argument("--faces", type=int, required=True)
    p.add_argument("output", type=Path)

    p = _command(commands, "smooth", "Taubin smoothing", run_smooth)
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--iterations", type=int, default=10)

    p = _command(commands, "remesh", "split edges to a maximum length", run_remesh)
    p.add_argument("input", type=Path)
    p.add_argument("--max-edge", type=float, required=True, help="mm")
    p.add_argument("output", type=Path)


def _command(commands: argparse._SubParsersAction, name: str, help_text: str, fn: Any) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = commands.add_parser(name, help=help_text)
    p.add_argument("--provenance", type=Path, help="write the provenance record (JSON) here")
    p.add_argument("--max-faces", type=int, default=MeshLimits.max_faces, help="refuse inputs with more triangles")
    p.set_defaults(fn=fn)
    return p


def run_info(args: argparse.Namespace, _settings: Any = None) -> int:
    run = _run(args, "analyze", {"mesh": args.file}, {"thickness_samples": args.thickness_samples})
    return _finish(args, run, {})


def run_repair(args: argparse.Namespace, _settings: Any = None) -> int:
    keep: str | list[int] = args.keep
    if args.keep not in ("all", "largest"):
        try:
            keep = [int(i) for i in args.keep.split(",")]
        except ValueError:
            raise InvalidDesignParameters(
                f"--keep: all, largest or indices like 0,2, not {args.keep!r}", field="keep"
            ) from None
    params = {
        "keep": keep,
        "fill_holes": not args.no_fill_holes,
        "max_hole_edges": args.max_hole_edges,
        "min_component_volume_mm3": args.min_component_volume,
    }
    run = _run(args, "repair", {"mesh": args.input}, params, _format_of(args.output))
    return _finish(args, run, {"repaired": args.output})


def run_cut(args: argparse.Namespace, _settings: Any = None) -> int:
    fmt = args.format or _default_format(args.input)
    run = _run(args, "cut", {"mesh": args.input}, {"plane": args.plane}, fmt)
    return _finish(
        args, run, {role: args.out_dir / f"{args.input.stem}-{role}.{fmt}" for role in ("positive", "negative")}
    )


def run_wedge(args: argparse.Namespace, _settings: Any = None) -> int:
    if len(args.plane) != 2:
        raise InvalidDesignParameters("wedge: give --plane exactly twice", field="plane")
    fmt = args.format or _default_format(args.input)
    run = _run(args, "wedge", {"mesh": args.input}, {"planes": args.plane}, fmt)
    return _finish(
        args, run, {role: args.out_dir / f"{args.input.stem}-{role}.{fmt}" for role in ("wedge", "remaining")}
    )


def run_mirror(args: argparse.Namespace, _settings: Any = None) -> int:
    inputs = {"mesh": args.input} | ({"target": args.align_to} if args.align_to else {})
    params: dict[str, Any] = {"plane": args.plane, "max_iterations": args.max_iterations}
    if args.region:
        params["region"] = _json(args.region, "--region")
    if args.max_distance is not None:
        params["max_distance_mm"] = args.max_distance
    run = _run(args, "mirror", inputs, params, _format_of(args.output))
    return _finish(args, run, {"mirrored": args.output})


def run_boolean(args: argparse.Namespace, _settings: Any = None) -> int:
    run = _run(args, "boolean", {"a": args.a, "b": args.b}, {"op": args.op}, _format_of(args.output))
    return _finish(args, run, {"result": args.output})


def run_guide(args: argparse.Namespace, _settings: Any = None) -> int:
    params: dict[str, Any] = {
        "region": _json(args.region, "--region"),
        "trajectories": [_json(t, "--trajectory") for t in args.trajectory],
    }
    options = {
        "clearance_mm": args.clearance,
        "thickness_mm": args.thickness,
        "sleeve_length_mm": args.sleeve_length,
        "sleeve_wall_mm": args.sleeve_wall,
        "drill_clearance_mm": args.drill_clearance,
        "resolution_mm": args.resolution,
    }
    params |= {k: v for k, v in options.items() if v is not None}
    if args.label:
        if not args.label_at:
            raise InvalidDesignParameters("--label needs --label-at X,Y,Z", field="label")
        params["label"] = {"text": args.label, "anchor_lps": args.label_at.split(","), "height_mm": args.label_height}
    run = _run(args, "guide", {"bone": args.bone}, params, _format_of(args.output))
    return _finish(args, run, {"guide": args.output})


def run_decimate(args: argparse.Namespace, _settings: Any = None) -> int:
    run = _run(args, "decimate", {"mesh": args.input}, {"target_faces": args.faces}, _format_of(args.output))
    return _finish(args, run, {"decimated": args.output})


def run_smooth(args: argparse.Namespace, _settings: Any = None) -> int:
    run = _run(args, "smooth", {"mesh": args.input}, {"iterations": args.iterations}, _format_of(args.output))
    return _finish(args, run, {"smoothed": args.output})


def run_remesh(args: argparse.Namespace, _settings: Any = None) -> int:
    run = _run(args, "remesh", {"mesh": args.input}, {"max_edge_mm": args.max_edge}, _format_of(args.output))
    return _finish(args, run, {"remeshed": args.output})


# --- shared -----------------------------------------------------------------------------------------------


def _run(
    args: argparse.Namespace, operation: str, files: dict[str, Path], params: dict[str, Any], fmt: str = DEFAULT_FORMAT
) -> OperationRun:
    inputs = {
        role: InputArtifact(artifact_id=str(path), data=_read(path), format=format_from_name(path.name))
        for role, path in files.items()
    }
    return run_operation(operation, inputs, params, limits=MeshLimits(max_faces=args.max_faces), output_format=fmt)


def _read(path: Path) -> bytes:
    format_from_name(path.name)  # an unsupported name is the clearer error, before a missing file
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidDesignParameters(f"{path}: {exc.strerror}", field="input") from None


def _finish(args: argparse.Namespace, run: OperationRun, paths: dict[str, Path]) -> int:
    written = []
    for output in run.outputs:
        path = paths[output.role]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(output.data)
        written.append(
            {
                "role": output.role,
                "path": str(path),
                "sha256": output.sha256,
                "faces": output.faces,
                "float32_collisions": output.float32_collisions,
            }
        )
    if args.provenance:
        record = run.provenance.with_output_ids({o.role: str(paths[o.role]) for o in run.outputs})
        args.provenance.write_text(record.to_json() + "\n")
    json.dump({"operation": run.operation, "report": run.report, "outputs": written}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _format_of(path: Path) -> str:
    fmt = format_from_name(path.name)
    if fmt not in EXPORT_FORMATS:
        raise InvalidDesignParameters(f"{path.name}: can write {', '.join(EXPORT_FORMATS)}", field="output")
    return fmt


def _default_format(path: Path) -> str:
    fmt = format_from_name(path.name)
    return fmt if fmt in EXPORT_FORMATS else DEFAULT_FORMAT


def _json(text: str, option: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidDesignParameters(f"{option}: not valid JSON ({exc})", field=option) from None
