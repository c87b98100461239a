"""CT volume → bone model: the one code path behind the `imaging.build_model` job and `trinity ct2mesh`.

PURE. Segmentation (segment.py) then surface extraction (surface.py), and the three exports: GLB for
the browser, binary STL and 3MF for printing, all in patient LPS millimetres.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import Any, Literal

import SimpleITK as sitk

from server.design.meshes import export_mesh, make_mesh
from server.imaging.mesh_files import to_3mf, to_glb, to_stl
from server.imaging.segment import Mask, SegmentationParams, segment
from server.imaging.surface import Mesh, Surface, SurfaceParams, extract_surface


def to_ply(mesh: Mesh, name: str = "surface") -> bytes:
    """Doubles, exactly as computed: what design operations read back."""
    return export_mesh(make_mesh(mesh.vertices_lps, mesh.faces), "ply")


EXPORTS: dict[str, Callable[..., bytes]] = {"glb": to_glb, "stl": to_stl, "3mf": to_3mf, "ply": to_ply}
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class ModelParams:
    preset: str = "bone"
    hu_min: float | None = None
    hu_max: float | None = None
    keep: Literal["largest", "seed", "all"] = "largest"
    seed_lps: tuple[float, float, float] | None = None
    closing_mm: float = 1.0
    fill_holes: bool = True
    smoothing_iterations: int = 20
    target_faces: int | None = 300_000

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelParams:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data and data[k] is not None}
        if "seed_lps" in fields:
            fields["seed_lps"] = tuple(float(v) for v in fields["seed_lps"])
        if fields.get("preset") == "custom":
            fields.pop("preset")
        return cls(**fields)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Model:
    surface: Surface
    segmentation: dict[str, Any]
    files: dict[str, bytes]


def libraries() -> dict[str, str]:
    return {name: version(name) for name in ("numpy", "SimpleITK", "scikit-image", "fast_simplification", "pydicom")}


def build_model(
    image: sitk.Image,
    params: ModelParams,
    progress: Progress | None = None,
    *,
    name: str = "model",
    formats: tuple[str, ...] = tuple(EXPORTS),
) -> Model:
    report = progress or (lambda fraction, message: None)
    seg_params = SegmentationParams(
        preset=params.preset,
        hu_min=params.hu_min,
        hu_max=params.hu_max,
        keep=params.keep,
        seed_lps=params.seed_lps,
        closing_radius_mm=params.closing_mm,
        fill_holes=params.fill_holes,
    )
    mask = segment(image, seg_params, lambda stage, f: report(0.4 * f, f"segmentation: {stage}"))
    return model_from_mask(mask, params, report, name=name, formats=formats)


def model_from_mask(
    mask: Mask,
    params: ModelParams,
    progress: Progress | None = None,
    *,
    name: str = "model",
    formats: tuple[str, ...] = tuple(EXPORTS),
) -> Model:
    """The surface half: a mask (thresholded here, or a label map made in 3D Slicer) to model files."""
    report = progress or (lambda fraction, message: None)
    surface = extract_surface(
        mask,
        SurfaceParams(smoothing_iterations=params.smoothing_iterations, target_faces=params.target_faces),
        lambda stage, f: report(0.4 + 0.5 * f, f"surface: {stage}"),
    )
    report(0.92, f"exporting {', '.join(f.upper() for f in formats)}")
    files = {fmt: EXPORTS[fmt](surface.mesh, name=name) for fmt in formats}
    return Model(surface, asdict(mask.report), files)
