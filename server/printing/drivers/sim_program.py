"""What a simulated printer prints: the layers of an uploaded file, and a picture of any one of them.

Reads what Trinity sends to printers: PrusaSlicer G-code (layers at `;LAYER_CHANGE`, Cura's `;LAYER:n`
too; the picture draws the layer's extrusion moves), SL1 resin archives (layer count from config.ini;
the picture is the layer's own mask image), layer-contour stacks (`trinity-layers/1` JSON) and plain
meshes (cut on the fly). Pictures are small PNGs (a few hundred pixels) of the build plate seen from
above, for the simulator's synthetic camera. No network; files are read from disk when a layer is drawn.
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import trimesh
from PIL import Image, ImageDraw
from shapely.geometry import Polygon

from server.printing.contours import LayerStack, section_at
from server.printing.drivers.base import BuildVolume, PrinterRejected
from server.printing.fleet import Technology

MESH_SUFFIXES = (".stl", ".ply", ".obj", ".3mf", ".glb")
_LAYER_MARK = re.compile(rb"^;(LAYER_CHANGE|LAYER:-?\d+)")
_MOVE = re.compile(r"^G[01]\s")
_AXIS = re.compile(r"([XYE])(-?\d*\.?\d+)")
BACKGROUND = (24, 26, 30)
PLATE = (48, 52, 60)
PART = (236, 160, 64)
BELOW = (110, 84, 50)


@dataclass
class Program:
    """One uploaded print file: how many layers, and how to draw one."""

    path: Path
    kind: str  # "gcode" | "sl1" | "layers" | "mesh"
    layers: int
    layer_mm: float | None = None
    gcode_offsets: tuple[int, ...] = ()  # byte offset of each layer's marker
    sl1_images: tuple[str, ...] = ()
    stack: LayerStack | None = None
    mesh: trimesh.Trimesh | None = None

    def render_png(self, layer: int, volume: BuildVolume, size_px: int = 320) -> bytes:
        """The plate from above with layer `layer` (1-based; 0: empty plate) drawn on it."""
        if self.kind == "sl1" and layer >= 1:
            return self._sl1_png(layer, size_px)
        scale = size_px / max(volume.x_mm, volume.y_mm)
        width, height = max(1, round(volume.x_mm * scale)), max(1, round(volume.y_mm * scale))
        image = Image.new("RGB", (width, height), PLATE)
        draw = ImageDraw.Draw(image)

        def px(x: float, y: float) -> tuple[float, float]:
            return (x * scale, height - y * scale)  # image rows run down, the plate's y up

        if layer >= 1:
            if self.kind == "gcode":
                for a, b in self._gcode_segments(layer):
                    draw.line([px(*a), px(*b)], fill=PART, width=1)
            else:
                for below, color in ((max(1, layer - 20), BELOW), (layer, PART)):
                    for polygon in self._polygons(below):
                        draw.polygon([px(x, y) for x, y in polygon.exterior.coords], fill=color)
                        for hole in polygon.interiors:
                            draw.polygon([px(x, y) for x, y in hole.coords], fill=PLATE)
        out = io.BytesIO()
        image.save(out, format="PNG", optimize=False)
        return out.getvalue()

    def _polygons(self, layer: int) -> tuple[Polygon, ...]:
        if self.stack is not None:
            return self.stack.layers[layer - 1] if layer <= len(self.stack.layers) else ()
        if self.mesh is not None and self.layer_mm:
            z0 = float(self.mesh.bounds[0, 2])
            return section_at(self.mesh, z0 + (layer - 0.5) * self.layer_mm)
        return ()

    def _gcode_segments(self, layer: int) -> list[tuple[tuple[float, float], tuple[float, float]]]:
        start = self.gcode_offsets[layer - 1]
        end = self.gcode_offsets[layer] if layer < len(self.gcode_offsets) else None
        with self.path.open("rb") as f:
            f.seek(start)
            chunk = f.read((end - start) if end is not None else 4 * 1024 * 1024)
        segments, x, y = [], math.nan, math.nan
        for line in chunk.decode(errors="replace").splitlines():
            if not _MOVE.match(line):
                continue
            axes = dict(_AXIS.findall(line.split(";", 1)[0]))
            nx, ny = float(axes.get("X", x)), float(axes.get("Y", y))
            if "E" in axes and ("X" in axes or "Y" in axes) and not math.isnan(x + y):
                segments.append(((x, y), (nx, ny)))
            x, y = nx, ny
        return segments

    def _sl1_png(self, layer: int, size_px: int) -> bytes:
        with zipfile.ZipFile(self.path) as archive:
            mask = Image.open(io.BytesIO(archive.read(self.sl1_images[layer - 1]))).convert("L")
        mask.thumbnail((size_px, size_px))
        image = Image.new("RGB", mask.size, PLATE)
        image.paste(Image.new("RGB", mask.size, PART), mask=mask)
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()


def load_program(path: Path, technology: Technology, default_layer_mm: float) -> Program:
    """Read an uploaded file; PrinterRejected when this printer cannot print it (as a host would say)."""
    name = path.name.lower()
    if name.endswith((".gcode", ".gco", ".g")):
        if technology not in (Technology.FDM, Technology.BIO, Technology.CERAMIC):
            raise PrinterRejected(f"a {technology.value} printer cannot print G-code ({path.name})")
        offsets, offset = [], 0
        with path.open("rb") as lines:
            for line in lines:
                if _LAYER_MARK.match(line):
                    offsets.append(offset)
                offset += len(line)
        if not offsets:
            raise PrinterRejected(f"{path.name} has no layer markers (;LAYER_CHANGE)")
        return Program(path, "gcode", len(offsets), gcode_offsets=tuple(offsets))
    if name.endswith(".sl1"):
        if technology is not Technology.SLA:
            raise PrinterRejected(f"a {technology.value} printer cannot print an SL1 resin archive ({path.name})")
        try:
            with zipfile.ZipFile(path) as archive:
                images = tuple(sorted(n for n in archive.namelist() if n.endswith(".png") and "/" not in n))
                config = archive.read("config.ini").decode()
        except (zipfile.BadZipFile, KeyError) as exc:
            raise PrinterRejected(f"{path.name} is not an SL1 archive: {exc}") from exc
        layer_mm = re.search(r"layerHeight\s*=\s*([\d.]+)", config)
        return Program(path, "sl1", len(images), float(layer_mm.group(1)) if layer_mm else None, sl1_images=images)
    if name.endswith(".json"):
        try:
            stack = LayerStack.from_json(path.read_bytes())
        except (ValueError, KeyError, TypeError) as exc:
            raise PrinterRejected(f"{path.name} is not a layer-contour stack: {exc}") from exc
        return Program(path, "layers", len(stack.layers), stack.layer_mm, stack=stack)
    if name.endswith(MESH_SUFFIXES):
        try:
            mesh = trimesh.load(path, force="mesh")
        except Exception as exc:  # trimesh raises many types for a bad file
            raise PrinterRejected(f"{path.name} is not a readable mesh: {exc}") from exc
        if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
            raise PrinterRejected(f"{path.name} holds no triangles")
        height_mm = float(mesh.bounds[1, 2] - mesh.bounds[0, 2])
        layers = max(1, math.ceil(height_mm / default_layer_mm))
        return Program(path, "mesh", layers, default_layer_mm, mesh=mesh)
    raise PrinterRejected(f"unsupported print file {path.name}")
