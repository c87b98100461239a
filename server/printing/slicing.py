"""Slicing: a placed part and a printer spec in, a print file and its estimates out.

    result = slice_part(mesh, printer, work_dir, transform=placement.transform, progress=progress)
    result.path, result.kind          # .gcode (FDM), .sl1 (resin), .layers.json (metal, ceramic, bio)
    result.estimate                   # PrintEstimate parsed from the slicer's output
    result.info                       # PrusaSlicer's --info on the model it sliced

FDM and resin go through PrusaSlicer's command line (Debian `prusa-slicer`, 2.5): Trinity's own profile
for the printer and material (`profiles`) by `--load`, `--export-gcode` or `--export-sla`, run with a
timeout, progress parsed from its "NN => step" lines. Before slicing, `--info` cross-checks the model:
PrusaSlicer's manifold flag and its volume against trimesh's (it silently repairs what it can, so a
mismatch means the slice would not be the part we checked). Estimates come from the G-code's closing
comments (`; estimated printing time (normal mode)`, `; filament used [mm]/[cm3]/[g]`, `;LAYER_CHANGE`)
or the SL1 archive's config.ini (`printTime`, `usedMaterial`, `numFast` + `numSlow`). Metal, ceramic and
bio printers get a layer-contour stack (`contours`) with an area-based estimate.

Errors: SlicerMissing (no binary), SlicingFailed (PrusaSlicer's own message), SlicingTimeout,
MeshNotPrintable (our check or PrusaSlicer's). Runs subprocesses: call it from a job, not a request.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from server.printing.contours import layer_stack
from server.printing.errors import MeshNotPrintable, SlicerMissing, SlicingFailed, SlicingTimeout
from server.printing.estimates import PrintEstimate, estimate_from_layers
from server.printing.fleet import Material, PrinterSpec, Technology
from server.printing.orientation import Matrix
from server.printing.preflight import require_printable
from server.printing.profiles import DEFAULT_OPTIONS, SliceOptions, fdm_profile, sla_profile

PRUSA_SLICER = "prusa-slicer"
VOLUME_TOLERANCE = 0.03  # PrusaSlicer's volume may differ from trimesh's by float32 STL rounding, not more
INFO_TIMEOUT_S = 60.0

Progress = Callable[[float, str], None]  # the job runner's progress(fraction, message)

_PROGRESS_LINE = re.compile(r"^\s*(\d{1,3})%?\s*=>\s*(.+?)\s*$")
_LOG_PREFIX = re.compile(r"^\[[^\]]*\]\s*\[[^\]]*\]\s*\[(\w+)\]\s*")
_DURATION_PART = re.compile(r"(\d+)\s*([dhms])")


@dataclass(frozen=True)
class SlicerInfo:
    size_mm: tuple[float, float, float]
    volume_mm3: float
    manifold: bool
    facets: int
    parts: int
    open_edges: int
    values: dict[str, str]  # everything --info printed, as printed


@dataclass(frozen=True)
class SliceResult:
    path: Path
    kind: str  # "gcode" | "sl1" | "layers"
    estimate: PrintEstimate
    slicer: str  # "prusa-slicer" or "trinity-contours"
    info: SlicerInfo | None = None


def find_slicer(binary: str = PRUSA_SLICER) -> str:
    path = shutil.which(binary)
    if path is None:
        raise SlicerMissing(
            f"PrusaSlicer ({binary}) is not installed or not on PATH; install the Debian package prusa-slicer",
            binary=binary,
        )
    return path


def slice_part(
    mesh: trimesh.Trimesh,
    printer: PrinterSpec,
    work_dir: Path,
    *,
    transform: Matrix | np.ndarray | None = None,
    material: Material | None = None,
    options: SliceOptions = DEFAULT_OPTIONS,
    timeout_s: float = 900.0,
    progress: Progress | None = None,
    binary: str = PRUSA_SLICER,
) -> SliceResult:
    """Check the mesh, place it (`transform`: preflight's 4x4), and slice it for this printer.

    `material` defaults to the printer's loaded material."""
    report = progress or _no_progress
    require_printable(mesh)
    material = material or printer.loaded
    if material is None:
        raise SlicingFailed(f"printer {printer.id} has no material loaded and none was given")
    placed = mesh.copy()
    if transform is not None:
        placed.apply_transform(np.asarray(transform, dtype=np.float64))
    work_dir.mkdir(parents=True, exist_ok=True)
    if printer.technology not in (Technology.FDM, Technology.SLA):
        report(0.1, "cutting layer contours")
        return contour_stack(placed, printer, material, work_dir / "part.layers.json")
    model = work_dir / "part.stl"
    placed.export(model)
    return slice_file(
        model,
        printer,
        work_dir,
        material=material,
        expected_volume_mm3=float(placed.volume),
        options=options,
        timeout_s=timeout_s,
        progress=report,
        binary=binary,
    )


def slice_file(
    model: Path,
    printer: PrinterSpec,
    work_dir: Path,
    *,
    material: Material,
    expected_volume_mm3: float | None = None,
    options: SliceOptions = DEFAULT_OPTIONS,
    timeout_s: float = 900.0,
    progress: Progress | None = None,
    binary: str = PRUSA_SLICER,
) -> SliceResult:
    """Slice a model file already placed for the printer (FDM -> G-code, SLA -> SL1) with PrusaSlicer."""
    report = progress or _no_progress
    executable = find_slicer(binary)
    datadir = work_dir / "prusaslicer-data"  # keep a user's own PrusaSlicer settings out of it
    report(0.0, "checking the model with PrusaSlicer --info")
    info = slicer_info(model, binary=executable, datadir=datadir)
    if not info.manifold:
        raise MeshNotPrintable(
            f"PrusaSlicer finds the model not manifold (open_edges = {info.open_edges})", slicer_info=info.values
        )
    if expected_volume_mm3 and abs(info.volume_mm3 - expected_volume_mm3) > VOLUME_TOLERANCE * expected_volume_mm3:
        raise SlicingFailed(
            f"PrusaSlicer measures {info.volume_mm3:.0f} mm³, the checked mesh has {expected_volume_mm3:.0f} mm³",
            slicer_info=info.values,
        )
    if printer.technology is Technology.FDM:
        profile, kind, action = fdm_profile(printer, material, options), "gcode", "--export-gcode"
    elif printer.technology is Technology.SLA:
        profile, kind, action = sla_profile(printer, material, options), "sl1", "--export-sla"
    else:
        raise ValueError(f"PrusaSlicer does not slice for {printer.technology.value} printers; use contour_stack")
    ini = work_dir / f"{printer.technology.value}-{material.key}.ini"
    ini.write_text(profile)
    output = work_dir / f"{model.stem}.{kind}"
    output.unlink(missing_ok=True)

    def on_line(line: str) -> None:
        if match := _PROGRESS_LINE.match(line):
            report(0.05 + 0.9 * min(int(match.group(1)), 100) / 100, match.group(2))

    args = [executable, "--datadir", str(datadir), "--load", str(ini), action, "--output", str(output), str(model)]
    returncode, lines = _run(args, timeout_s=timeout_s, on_line=_monotonic(on_line))
    if returncode != 0 or not output.exists():
        raise SlicingFailed(_slicer_message(lines, returncode), returncode=returncode, output=lines[-40:])
    report(0.96, "reading the estimates")
    estimate = gcode_estimate(output) if kind == "gcode" else sl1_estimate(output, material)
    report(1.0, "sliced")
    return SliceResult(output, kind, estimate, "prusa-slicer", info)


def contour_stack(mesh: trimesh.Trimesh, printer: PrinterSpec, material: Material, output: Path) -> SliceResult:
    """The layer-contour stack for printers whose vendor build processors Trinity does not have."""
    stack = layer_stack(mesh, printer.layer_mm)
    output.write_bytes(stack.to_json())
    estimate = estimate_from_layers(
        printer.technology, material, layer_areas_mm2=stack.areas_mm2(), layer_mm=printer.layer_mm
    )
    return SliceResult(output, "layers", estimate, "trinity-contours")


def slicer_info(
    model: Path, *, binary: str = PRUSA_SLICER, datadir: Path | None = None, timeout_s: float = INFO_TIMEOUT_S
) -> SlicerInfo:
    """PrusaSlicer's `--info`: size, facets, manifoldness, volume of the model as it reads it."""
    args = [find_slicer(binary), *(["--datadir", str(datadir)] if datadir else []), "--info", str(model)]
    returncode, lines = _run(args, timeout_s=timeout_s)
    values: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.strip() and " " not in key.strip():
            values[key.strip()] = value.strip()
    if returncode != 0 or "volume" not in values:
        raise SlicingFailed(_slicer_message(lines, returncode), returncode=returncode, output=lines[-40:])
    return SlicerInfo(
        size_mm=(float(values["size_x"]), float(values["size_y"]), float(values["size_z"])),
        volume_mm3=float(values["volume"]),
        manifold=values.get("manifold") == "yes",
        facets=int(values.get("number_of_facets", 0)),
        parts=int(values.get("number_of_parts", 1)),
        open_edges=int(values.get("open_edges", 0)),
        values=values,
    )


def gcode_estimate(path: Path) -> PrintEstimate:
    """From PrusaSlicer's G-code: its time and filament comments, and the layer changes it marks."""
    layers, comments = 0, {}
    with path.open("rb") as lines:
        for raw in lines:
            if not raw.startswith(b";"):
                continue
            if raw.startswith(b";LAYER_CHANGE"):
                layers += 1
            elif raw.startswith((b"; estimated printing time (normal mode)", b"; filament used", b"; total filament")):
                key, _, value = raw.decode(errors="replace").partition("=")
                comments[key.strip("; \n")] = value.strip()
    if "estimated printing time (normal mode)" not in comments:
        raise SlicingFailed(f"no '; estimated printing time' comment in {path.name}")
    return PrintEstimate(
        time_s=parse_duration_s(comments["estimated printing time (normal mode)"]),
        layers=layers,
        material_cm3=float(comments.get("filament used [cm3]", 0.0)),
        material_g=float(comments.get("total filament used [g]", comments.get("filament used [g]", 0.0))),
        filament_mm=float(comments.get("filament used [mm]", 0.0)),
        source="prusaslicer",
    )


def sl1_estimate(path: Path, material: Material | None = None) -> PrintEstimate:
    """From an SL1 archive's config.ini: print time, resin used (ml) and the layer count."""
    with zipfile.ZipFile(path) as archive:
        text = archive.read("config.ini").decode()
    config = dict((k.strip(), v.strip()) for k, _, v in (line.partition("=") for line in text.splitlines()) if k)
    used_ml = float(config.get("usedMaterial", 0.0))
    density = material.density_g_cm3 if material is not None else 1.0
    return PrintEstimate(
        time_s=float(config["printTime"]),
        layers=int(config.get("numFast", 0)) + int(config.get("numSlow", 0)),
        material_cm3=used_ml,
        material_g=round(used_ml * density, 3),
        source="prusaslicer",
    )


def parse_duration_s(text: str) -> float:
    """PrusaSlicer's "1d 2h 3m 4s" (any subset) in seconds."""
    unit_s = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    parts = _DURATION_PART.findall(text)
    if not parts:
        raise SlicingFailed(f"unreadable duration {text!r}")
    return float(sum(int(n) * unit_s[u] for n, u in parts))


def _run(args: list[str], *, timeout_s: float, on_line: Callable[[str], None] | None = None) -> tuple[int, list[str]]:
    """Run the slicer in its own process group; its output lines (stdout and stderr merged) as they come."""
    try:
        process = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=True,  # so a timeout kills the slicer's children too
            env={**os.environ, "LC_ALL": "C"},
        )
    except FileNotFoundError as exc:
        raise SlicerMissing(f"PrusaSlicer ({args[0]}) cannot be started: {exc}", binary=args[0]) from exc
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if on_line is not None:
                on_line(lines[-1])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        reader.join(timeout=5)
        raise SlicingTimeout(f"PrusaSlicer did not finish within {timeout_s:g} s", timeout_s=timeout_s) from None
    reader.join(timeout=5)
    return process.returncode, lines


def _slicer_message(lines: list[str], returncode: int) -> str:
    """PrusaSlicer's own words: its [error] log lines and what a crash said, else its last lines."""
    said = []
    for line in lines:
        level = _LOG_PREFIX.match(line)
        if level and level.group(1) in ("error", "fatal"):
            said.append(_LOG_PREFIX.sub("", line))
        elif line.strip().startswith("what():"):
            said.append(line.strip().removeprefix("what():").strip())
        elif not level and not _PROGRESS_LINE.match(line) and ("fail" in line.lower() or "error" in line.lower()):
            said.append(line.strip())
    if not said:
        said = [line.strip() for line in lines if line.strip() and not _LOG_PREFIX.match(line)][-3:]
    reason = "; ".join(dict.fromkeys(said)) or "no output"
    how = f"exit status {returncode}" if returncode >= 0 else f"killed by signal {-returncode}"
    return f"PrusaSlicer failed ({how}): {reason}"


def _monotonic(on_line: Callable[[str], None]) -> Callable[[str], None]:
    """PrusaSlicer's FDM steps are not in order (70 => infill before 30 => preparing it): never go back,
    and pass a step on only when the percentage or the step changes (SLA repeats lines per percent)."""
    last: list[tuple[int, str]] = [(-1, "")]

    def forward(line: str) -> None:
        match = _PROGRESS_LINE.match(line)
        if match is None:
            return
        step = (int(match.group(1)), match.group(2))
        if step[0] >= last[0][0] and step != last[0]:
            last[0] = step
            on_line(line)

    return forward


def _no_progress(fraction: float, message: str) -> None:
    return None
