"""Imaging benchmark: a 512x512x300 synthetic head CT (bench/imaging/phantom.py) through volume →
bone mask → surface → smoothing → decimation → GLB, each step timed and its peak memory measured,
against VTK's pipeline and scikit-image's marching cubes on the same volume, in the same run:

  trinity          server.imaging: the volume read from a DICOM series written once before the timed
                   region (server.imaging.series), `segment` with the bone preset keeping all
                   components and no hole filling (the same mask as VTK's threshold), marching cubes,
                   windowed-sinc smoothing, decimation, watertight check, GLB
  trinity_default  the same with segment's defaults: the largest component, 3D hole filling
                   (fewer faces: the figures are shown, not compared)
  vtk              vtkImageData on the same array → vtkImageThreshold (226..3071 HU) →
                   vtkDiscreteFlyingEdges3D → vtkWindowedSincPolyDataFilter (20 iterations, pass band
                   0.01, as 3D Slicer) → vtkQuadricDecimation (same reduction) → vtkGLTFWriter (.glb)
  scikit_image     the array → numpy threshold → skimage.measure.marching_cubes on the whole volume

Every pipeline runs in its own fresh process (bench/imaging/pipelines.py), one after the other;
peak memory per step is the kernel's resident-set high-water mark over that step (reset before
it), so allocations made in C/C++ count. "above baseline" subtracts the process's resident set
after its imports (interpreter and libraries), which is not data.

    python -m bench.imaging [--reduction 0.9 --repeat 1 --pipelines trinity,vtk,...]
    python bench/run.py imaging

Prints a table and replaces the "imaging" key of bench/results.json. Targets: Trinity's total time
within 1.2x of VTK's; Trinity's peak memory above baseline at most 4x the volume (600 MiB).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fanout import write_results

REPO = Path(__file__).resolve().parent.parent.parent
RESULTS = REPO / "bench" / "results.json"
PIPELINES = ("trinity", "trinity_default", "vtk", "scikit_image")
STEPS = ("volume", "mask", "surface", "smooth", "decimate", "export")
VOLUME_MIB = 512 * 512 * 300 * 2 / 2**20
TIME_TARGET = 1.2
MEMORY_TARGET_MIB = 4 * VOLUME_MIB


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.imaging", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--pipelines", default=",".join(PIPELINES), help=f"subset of {','.join(PIPELINES)}")
    parser.add_argument("--reduction", type=float, default=0.9, help="fraction of faces decimation removes")
    parser.add_argument("--repeat", type=int, default=1, help="runs per pipeline; the fastest total is kept")
    parser.add_argument("--no-dicom", action="store_true", help="Trinity reads the array, not a DICOM series")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true", help="print only; leave the results file alone")
    parser.add_argument("--keep", action="store_true", help="keep the temporary volume and DICOM files")
    args = parser.parse_args(argv)
    args.pipelines = [p for p in args.pipelines.split(",") if p]
    unknown = set(args.pipelines) - set(PIPELINES)
    if unknown or args.repeat < 1 or not 0 < args.reduction < 1:
        parser.error(f"unknown pipelines {sorted(unknown)}" if unknown else "need repeat >= 1 and 0 < reduction < 1")
    return args


def run_pipeline(name: str, npy: Path, dicom: Path | None, reduction: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.imaging.pipelines", name, "--npy", str(npy), "--reduction", str(reduction)]
    if dicom is not None and name.startswith("trinity"):
        command += ["--dicom", str(dicom)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["total_s"] = sum(step["s"] for step in result["steps"].values())
    result["peak_mib"] = max(step["peak_mib"] for step in result["steps"].values())
    result["peak_above_baseline_mib"] = result["peak_mib"] - result["baseline_mib"]
    return result


def build_results(measured: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{figure: {pipeline: value, "ratio": trinity/vtk, "ratio_scikit_image": trinity/scikit_image}}."""
    figures: dict[str, dict[str, Any]] = {}

    def add(figure: str, value_of: Any) -> None:
        row = {name: value_of(m) for name, m in measured.items()}
        row = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items() if v is not None}
        for peer, key in (("vtk", "ratio"), ("scikit_image", "ratio_scikit_image")):
            if peer in row and "trinity" in row and not isinstance(row["trinity"], bool):
                row[key] = round(row["trinity"] / row[peer], 3) if row[peer] else None
        figures[figure] = row

    for step in STEPS:
        add(f"{step}_s", lambda m, step=step: m["steps"][step]["s"] if step in m["steps"] else None)
        add(f"{step}_peak_mib", lambda m, step=step: m["steps"][step]["peak_mib"] if step in m["steps"] else None)
    add("total_s", lambda m: m["total_s"])
    add("total_after_volume_s", lambda m: m["total_s"] - m["steps"]["volume"]["s"])
    add("peak_mib", lambda m: m["peak_mib"])
    add("baseline_mib", lambda m: m["baseline_mib"])
    add("peak_above_baseline_mib", lambda m: m["peak_above_baseline_mib"])
    add("peak_after_volume_above_baseline_mib", _after_volume_above_baseline)
    add("faces_extracted", lambda m: m.get("faces_extracted"))
    add("faces_final", lambda m: m.get("faces_final"))
    add("glb_bytes", lambda m: m.get("glb_bytes"))
    add("watertight", lambda m: m.get("watertight"))
    return figures


def _cell(seconds: float, peak_mib: float, above_mib: float) -> str:
    return f"{seconds:>7.2f} {peak_mib:>8.0f} {f'(+{above_mib:.0f})':>7}"


def _after_volume_above_baseline(m: dict[str, Any]) -> float:
    return max(s["peak_mib"] for k, s in m["steps"].items() if k != "volume") - m["baseline_mib"]


def print_table(measured: dict[str, dict[str, Any]]) -> None:
    names = list(measured)
    print(f"\n{'step':<10}" + "".join(f"{n:>24}" for n in names))
    print(f"{'':<10}" + "".join(f"{'s':>7} {'peak MiB (+base)':>16}" for _ in names))
    for step in (*STEPS, "total"):
        cells = []
        for name in names:
            m = measured[name]
            if step == "total":
                cells.append(_cell(m["total_s"], m["peak_mib"], m["peak_above_baseline_mib"]))
            elif step in m["steps"]:
                s = m["steps"][step]
                cells.append(_cell(s["s"], s["peak_mib"], s["peak_mib"] - m["baseline_mib"]))
            else:
                cells.append(f"{'-':>24}")
        print(f"{step:<10}" + "".join(f"{c:>24}" for c in cells))
    print(f"{'baseline':<10}" + "".join(f"{measured[n]['baseline_mib']:>24.0f}" for n in names))
    print(f"{'watertight':<10}" + "".join(f"{measured[n].get('watertight', '-')!s:>24}" for n in names))
    print(
        f"{'faces':<10}"
        + "".join(
            f"{measured[n].get('faces_extracted', 0):>14}->{measured[n].get('faces_final', '-')!s:>8}" for n in names
        )
    )
    if "trinity" in measured and "vtk" in measured:
        t, v = measured["trinity"], measured["vtk"]
        ratio = t["total_s"] / v["total_s"]
        print(f"\n  target: trinity total within {TIME_TARGET}x of vtk: {ratio <= TIME_TARGET} ({ratio:.2f}x)")
    for name in ("trinity", "trinity_default"):
        if name in measured:
            m = measured[name]
            whole, after = m["peak_above_baseline_mib"], _after_volume_above_baseline(m)
            print(
                f"  target: {name} peak above baseline <= {MEMORY_TARGET_MIB:.0f} MiB: whole pipeline "
                f"{whole <= MEMORY_TARGET_MIB} ({whole:.0f} MiB, absolute {m['peak_mib']:.0f}); mask to GLB "
                f"{after <= MEMORY_TARGET_MIB} ({after:.0f} MiB, absolute {after + m['baseline_mib']:.0f})"
            )
    print()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from bench.imaging.phantom import write_dicom_series, write_volume

    workdir = Path(tempfile.mkdtemp(prefix="trinity-bench-imaging-"))
    try:
        started = time.monotonic()
        volume = write_volume(workdir / "head.npy")
        dicom = None
        if not args.no_dicom and _series_available():
            dicom = workdir / "dicom"
            write_dicom_series(volume, dicom)
        del volume
        print(
            f"[imaging] phantom written in {time.monotonic() - started:.0f}s "
            f"({'DICOM series for Trinity' if dicom else 'array only'})",
            flush=True,
        )
        measured: dict[str, dict[str, Any]] = {}
        for name in args.pipelines:
            runs = [run_pipeline(name, workdir / "head.npy", dicom, args.reduction) for _ in range(args.repeat)]
            measured[name] = min(runs, key=lambda r: r["total_s"])
            measured[name]["peak_mib"] = max(r["peak_mib"] for r in runs)
            measured[name]["peak_above_baseline_mib"] = max(r["peak_above_baseline_mib"] for r in runs)
            print(f"[imaging] {name}: {measured[name]['total_s']:.2f}s", flush=True)
    finally:
        if args.keep:
            print(f"[imaging] kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(measured)
    results = build_results(measured)
    if not args.no_write:
        write_results(args.results, results, key="imaging")
        print(f"[imaging] replaced the 'imaging' key of {args.results}")
    return results


def _series_available() -> bool:
    try:
        from server.imaging.series import volumes_from_paths  # noqa: F401
    except ImportError:
        return False
    return True
