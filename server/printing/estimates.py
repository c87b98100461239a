"""Print time and material before slicing, from the part's volume, surface, height and overhangs.

Extrusion and powder-bed processes (FDM, metal, ceramic, bio) lay down material at a rate, so their
time is the deposited volume over that rate plus a fixed cost per layer (layer change, recoating).
Resin printers expose a whole layer at once, so their time is layers times the layer time whatever the area.
Deposited volume: a solid shell of `shell_mm` under the surface, the inside at the infill fraction,
plus supports under the overhangs at `support_fill`. The rates are conservative fleet averages; the
slicer's figures (`slicing`) replace them once a job is sliced. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from server.printing.fleet import Material, Technology

FILAMENT_DIAMETER_MM = 1.75


@dataclass(frozen=True)
class ProcessRates:
    deposit_mm3_s: float | None  # None: the whole layer is cured at once (resin)
    layer_s: float  # per layer: layer change, recoat, peel and exposure
    shell_mm: float  # solid wall under the surface
    infill: float  # solid fraction inside the walls
    support_fill: float  # solid fraction of the support under overhangs


RATES: dict[Technology, ProcessRates] = {
    Technology.FDM: ProcessRates(deposit_mm3_s=6.0, layer_s=1.5, shell_mm=1.2, infill=0.15, support_fill=0.15),
    Technology.SLA: ProcessRates(deposit_mm3_s=None, layer_s=14.0, shell_mm=math.inf, infill=1.0, support_fill=0.05),
    Technology.METAL: ProcessRates(deposit_mm3_s=4.0, layer_s=9.0, shell_mm=math.inf, infill=1.0, support_fill=0.2),
    Technology.CERAMIC: ProcessRates(deposit_mm3_s=1.5, layer_s=20.0, shell_mm=math.inf, infill=1.0, support_fill=0.1),
    Technology.BIO: ProcessRates(deposit_mm3_s=0.5, layer_s=2.0, shell_mm=0.6, infill=0.4, support_fill=0.0),
}


@dataclass(frozen=True)
class PrintEstimate:
    time_s: float
    layers: int
    material_cm3: float  # resin in ml, filament, powder melted, paste or bioink
    material_g: float
    filament_mm: float | None = None  # FDM only
    source: str = "volume"  # "volume" (here), "prusaslicer" (G-code / SL1), "contours" (layer stack)


def estimate_print(
    technology: Technology,
    material: Material | None,
    *,
    volume_mm3: float,
    area_mm2: float,
    height_mm: float,
    support_area_mm2: float,
    layer_mm: float,
    rates: dict[Technology, ProcessRates] = RATES,
) -> PrintEstimate:
    rate = rates[technology]
    layers = max(1, math.ceil(height_mm / layer_mm - 1e-9))
    shell_mm3 = min(volume_mm3, area_mm2 * rate.shell_mm) if math.isfinite(rate.shell_mm) else volume_mm3
    part_mm3 = shell_mm3 + (volume_mm3 - shell_mm3) * rate.infill
    support_mm3 = support_area_mm2 * height_mm / 2 * rate.support_fill  # supports reach half way down on average
    return _estimate(technology, material, part_mm3 + support_mm3, layers, rate, "volume")


def estimate_from_layers(
    technology: Technology,
    material: Material | None,
    *,
    layer_areas_mm2: Sequence[float],
    layer_mm: float,
    support_area_mm2: float = 0.0,
    rates: dict[Technology, ProcessRates] = RATES,
) -> PrintEstimate:
    """From a layer-contour stack: the area of every layer, solid (metal, ceramic) or at infill (bio)."""
    rate = rates[technology]
    height_mm = len(layer_areas_mm2) * layer_mm
    part_mm3 = sum(layer_areas_mm2) * layer_mm * (rate.infill if math.isfinite(rate.shell_mm) else 1.0)
    support_mm3 = support_area_mm2 * height_mm / 2 * rate.support_fill
    return _estimate(technology, material, part_mm3 + support_mm3, max(1, len(layer_areas_mm2)), rate, "contours")


def _estimate(
    technology: Technology, material: Material | None, used_mm3: float, layers: int, rate: ProcessRates, source: str
) -> PrintEstimate:
    time_s = layers * rate.layer_s + (used_mm3 / rate.deposit_mm3_s if rate.deposit_mm3_s else 0.0)
    density = material.density_g_cm3 if material is not None else 1.0
    filament_mm = used_mm3 / (math.pi * (FILAMENT_DIAMETER_MM / 2) ** 2) if technology is Technology.FDM else None
    return PrintEstimate(
        time_s=round(time_s, 1),
        layers=layers,
        material_cm3=round(used_mm3 / 1000.0, 3),
        material_g=round(used_mm3 / 1000.0 * density, 3),
        filament_mm=round(filament_mm, 1) if filament_mm is not None else None,
        source=source,
    )
