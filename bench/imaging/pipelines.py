"""One benchmark pipeline in this (fresh) process; prints one JSON line of per-step figures.

    python -m bench.imaging.pipelines trinity|vtk|scikit_image --npy head.npy [--dicom DIR] [--reduction 0.9]

Memory: after the pipeline's imports the process's resident set is the baseline. Before each step
the kernel's peak-RSS mark is reset (`echo 5 > /proc/self/clear_refs`) and after it VmHWM is read,
so each step's peak covers every allocation (numpy, SimpleITK, VTK, C++), not only Python's. Where
the reset is not allowed, a thread samples VmRSS every millisecond instead (the JSON says which).
The whole run's peak is also read from getrusage's ru_maxrss.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import resource
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from bench.imaging.phantom import SPACING_MM, origin_lps

T = TypeVar("T")
HU_RANGE = (226.0, 3071.0)  # InVesalius bone, for every pipeline


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        match = re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.MULTILINE)
    return int(match.group(1)) / 1024 if match else float("nan")


class Meter:
    def __init__(self) -> None:
        gc.collect()
        self.baseline_mib = _status_mib("VmRSS")
        self.method = "clear_refs" if self._reset() else "sampled"
        self.steps: dict[str, dict[str, float]] = {}

    @staticmethod
    def _reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")
            return True
        except OSError:
            return False

    def step(self, name: str, work: Callable[[], T]) -> T:
        gc.collect()
        sampled = [0.0]
        stop = threading.Event()
        sampler = None
        if self.method == "clear_refs":
            self._reset()
        else:

            def sample() -> None:
                while not stop.wait(0.001):
                    sampled[0] = max(sampled[0], _status_mib("VmRSS"))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
        started = time.perf_counter()
        result = work()
        elapsed = time.perf_counter() - started
        if sampler is not None:
            stop.set()
            sampler.join()
        peak = _status_mib("VmHWM") if self.method == "clear_refs" else max(sampled[0], _status_mib("VmRSS"))
        self.steps[name] = {"s": elapsed, "peak_mib": peak, "after_mib": _status_mib("VmRSS")}
        return result


def trinity(args: argparse.Namespace, defaults: bool = False) -> dict[str, Any]:
    """`defaults`: segment's largest component and 3D hole filling; otherwise every component and
    no filling, the same mask as VTK's threshold."""
    import SimpleITK as sitk

    from server.imaging.mesh_files import to_glb
    from server.imaging.segment import SegmentationParams, segment
    from server.imaging.surface import decimate, mask_to_mesh, measure, require_watertight, smooth

    volumes_from_paths = None
    if args.dicom:
        from server.imaging.series import volumes_from_paths
    meter = Meter()

    def load() -> sitk.Image:
        if volumes_from_paths is not None:
            volumes, problems = volumes_from_paths(sorted(Path(args.dicom).glob("*.dcm")))
            if problems or len(volumes) != 1:
                raise SystemExit(f"series gave {len(volumes)} volume(s), problems: {problems[:3]}")
            return volumes[0].image
        array = np.load(args.npy)
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(SPACING_MM)
        image.SetOrigin(origin_lps())
        return image

    volume = meter.step("volume", load)
    params = SegmentationParams(preset="bone") if defaults else SegmentationParams(keep="all", fill_holes=False)
    mask = meter.step("mask", lambda: segment(volume, params))
    mesh = meter.step("surface", lambda: mask_to_mesh(mask.image))
    extracted = len(mesh.faces)
    mesh = meter.step("smooth", lambda: smooth(mesh, iterations=20, pass_band=0.01))
    notes: list[str] = []
    mesh = meter.step("decimate", lambda: decimate(mesh, round(extracted * (1 - args.reduction)), notes=notes))

    def export() -> bytes:
        require_watertight(mesh)
        return to_glb(mesh)

    glb = meter.step("export", export)
    report = measure(mesh, notes)
    return {
        "meter": meter,
        "faces_extracted": extracted,
        "faces_final": report.faces,
        "glb_bytes": len(glb),
        "watertight": report.watertight,
        "bone_voxels": mask.report.voxels,
        "components_found": mask.report.components_found,
        "volume_mm3": report.volume_mm3,
        "decimation_notes": len(report.notes),
    }


def vtk(args: argparse.Namespace) -> dict[str, Any]:
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData, vtkMultiBlockDataSet
    from vtkmodules.vtkFiltersCore import vtkQuadricDecimation, vtkWindowedSincPolyDataFilter
    from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D
    from vtkmodules.vtkImagingCore import vtkImageThreshold
    from vtkmodules.vtkIOGeometry import vtkGLTFWriter

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    meter = Meter()
    keep: dict[str, Any] = {}

    def load() -> vtkImageData:
        keep["array"] = array = np.load(args.npy)
        image = vtkImageData()
        image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
        image.SetSpacing(SPACING_MM)
        image.SetOrigin(origin_lps())
        image.GetPointData().SetScalars(numpy_to_vtk(array.reshape(-1), deep=False))
        return image

    def threshold(image: vtkImageData) -> vtkImageData:
        # vtkImageThreshold, though deprecated in 9.7: vtkImageBinaryThreshold 9.7.2 passed the
        # input through uncut (measured), and this is the filter 3D Slicer's pipeline uses
        f = vtkImageThreshold()
        f.SetInputData(image)
        f.ThresholdBetween(*HU_RANGE)
        f.SetInValue(1)
        f.SetOutValue(0)
        f.ReplaceInOn()
        f.ReplaceOutOn()
        f.SetOutputScalarTypeToUnsignedChar()
        f.Update()
        return f.GetOutput()

    def flying_edges(mask: vtkImageData) -> Any:
        f = vtkDiscreteFlyingEdges3D()
        f.SetInputData(mask)
        f.SetValue(0, 1)
        f.ComputeNormalsOff()
        f.ComputeGradientsOff()
        f.Update()
        return f.GetOutput()

    def windowed_sinc(poly: Any) -> Any:  # 3D Slicer's settings for smoothing factor 0.5
        f = vtkWindowedSincPolyDataFilter()
        f.SetInputData(poly)
        f.SetNumberOfIterations(20)
        f.SetPassBand(0.01)
        f.BoundarySmoothingOff()
        f.FeatureEdgeSmoothingOff()
        f.NonManifoldSmoothingOn()
        f.NormalizeCoordinatesOn()
        f.Update()
        return f.GetOutput()

    def quadric(poly: Any) -> Any:
        f = vtkQuadricDecimation()
        f.SetInputData(poly)
        f.SetTargetReduction(args.reduction)
        f.Update()
        return f.GetOutput()

    def export(poly: Any) -> int:
        actor = vtkMultiBlockDataSet()  # the writer wants renderers of actors: blocks of blocks
        actor.SetNumberOfBlocks(1)
        actor.SetBlock(0, poly)
        blocks = vtkMultiBlockDataSet()
        blocks.SetNumberOfBlocks(1)
        blocks.SetBlock(0, actor)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "bone.glb"
            writer = vtkGLTFWriter()
            writer.SetFileName(str(path))
            writer.SetInputData(blocks)
            writer.Write()
            return path.stat().st_size

    volume = meter.step("volume", load)
    mask = meter.step("mask", lambda: threshold(volume))
    poly = meter.step("surface", lambda: flying_edges(mask))
    extracted = poly.GetNumberOfCells()
    poly = meter.step("smooth", lambda: windowed_sinc(poly))
    poly = meter.step("decimate", lambda: quadric(poly))
    size = meter.step("export", lambda: export(poly))
    return {
        "meter": meter,
        "faces_extracted": extracted,
        "faces_final": poly.GetNumberOfCells(),
        "glb_bytes": size,
        "watertight": _vtk_watertight(poly),  # after the timed steps: VTK's pipeline does not check
    }


def _vtk_watertight(poly: Any) -> bool:
    from vtkmodules.util.numpy_support import vtk_to_numpy

    from server.imaging.mesh import Mesh, is_watertight

    points = vtk_to_numpy(poly.GetPoints().GetData()).astype(np.float64)
    faces = vtk_to_numpy(poly.GetPolys().GetConnectivityArray()).reshape(-1, 3).astype(np.int32)
    return is_watertight(Mesh(points, faces))


def scikit_image(args: argparse.Namespace) -> dict[str, Any]:
    from skimage.measure import marching_cubes

    meter = Meter()
    volume = meter.step("volume", lambda: np.load(args.npy))
    mask = meter.step("mask", lambda: ((volume >= HU_RANGE[0]) & (volume <= HU_RANGE[1])).view(np.uint8))
    _, faces, _, _ = meter.step("surface", lambda: marching_cubes(mask, 0.5, spacing=SPACING_MM[::-1]))
    return {"meter": meter, "faces_extracted": len(faces)}


PIPELINES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "trinity": trinity,
    "trinity_default": lambda args: trinity(args, defaults=True),
    "vtk": vtk,
    "scikit_image": scikit_image,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.imaging.pipelines")
    parser.add_argument("pipeline", choices=sorted(PIPELINES))
    parser.add_argument("--npy", required=True)
    parser.add_argument("--dicom", default="")
    parser.add_argument("--reduction", type=float, default=0.9)
    args = parser.parse_args(argv)
    result = PIPELINES[args.pipeline](args)
    meter: Meter = result.pop("meter")
    result.update(
        baseline_mib=meter.baseline_mib,
        memory_method=meter.method,
        run_peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        steps=meter.steps,
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
