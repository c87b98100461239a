"""Trinity's own minimal PrusaSlicer profiles (.ini), written from a printer spec and its material.

PrusaSlicer's bundled vendor profiles describe Prusa's printers; the center's fleet is mixed, so each
slice gets a small profile from what Trinity knows: bed and height from the build volume, nozzle and
layer height from the spec, temperatures and density from the material. Everything else is
PrusaSlicer's default. Loaded with `--load`; keys as in `prusa-slicer --help-fff` / `--help-sla`. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.printing.estimates import FILAMENT_DIAMETER_MM
from server.printing.fleet import Material, PrinterSpec, Technology

FILAMENT_TYPES = {"pla": "PLA", "petg": "PET", "pa12": "PA", "tpu": "FLEX"}  # PrusaSlicer's fixed list


@dataclass(frozen=True)
class ResinExposure:
    layer_s: float
    first_layers_s: float


EXPOSURES = {
    "resin_standard": ResinExposure(8.0, 35.0),
    "resin_biocompatible": ResinExposure(10.0, 40.0),  # medical resins cure slower than standard ones
}
DEFAULT_EXPOSURE = ResinExposure(10.0, 40.0)
SLA_PIXEL_MM = 0.05  # a typical masked-SLA display pitch


@dataclass(frozen=True)
class SliceOptions:
    infill_percent: int = 15
    supports: bool = True
    gcode_flavor: str = "marlin2"  # Marlin 2 and Klipper both read it


DEFAULT_OPTIONS = SliceOptions()


def fdm_profile(printer: PrinterSpec, material: Material, options: SliceOptions = DEFAULT_OPTIONS) -> str:
    _check(printer, material, Technology.FDM)
    volume = printer.build_volume
    nozzle_c = material.nozzle_c if material.nozzle_c is not None else 210.0
    bed_c = material.bed_c if material.bed_c is not None else 60.0
    return _ini(
        {
            "printer_technology": "FFF",
            "bed_shape": _bed_shape(volume.x_mm, volume.y_mm),
            "max_print_height": volume.z_mm,
            "nozzle_diameter": printer.nozzle_mm,
            "layer_height": printer.layer_mm,
            "first_layer_height": printer.layer_mm,
            "filament_diameter": FILAMENT_DIAMETER_MM,
            "filament_density": material.density_g_cm3,
            "filament_type": FILAMENT_TYPES.get(material.key, "PLA"),
            "temperature": nozzle_c,
            "first_layer_temperature": nozzle_c + 5,
            "bed_temperature": bed_c,
            "first_layer_bed_temperature": bed_c,
            "fill_density": f"{options.infill_percent}%",
            "support_material": int(options.supports),
            "support_material_auto": 1,
            "support_material_threshold": 45,  # the overhang limit orientation uses
            "gcode_flavor": options.gcode_flavor,
        }
    )


def sla_profile(printer: PrinterSpec, material: Material, options: SliceOptions = DEFAULT_OPTIONS) -> str:
    _check(printer, material, Technology.SLA)
    volume = printer.build_volume
    exposure = EXPOSURES.get(material.key, DEFAULT_EXPOSURE)
    return _ini(
        {
            "printer_technology": "SLA",
            "bed_shape": _bed_shape(volume.x_mm, volume.y_mm),
            "display_width": volume.x_mm,
            "display_height": volume.y_mm,
            "display_pixels_x": round(volume.x_mm / SLA_PIXEL_MM),
            "display_pixels_y": round(volume.y_mm / SLA_PIXEL_MM),
            "display_orientation": "landscape" if volume.x_mm >= volume.y_mm else "portrait",
            "max_print_height": volume.z_mm,
            "layer_height": printer.layer_mm,
            "initial_layer_height": printer.layer_mm,  # PrusaSlicer's 0.3 mm default would skew the count
            "exposure_time": exposure.layer_s,
            "initial_exposure_time": exposure.first_layers_s,
            "material_density": material.density_g_cm3,
            "supports_enable": int(options.supports),
            "pad_enable": int(options.supports),
            "pad_around_object": 1,  # the part sits in its pad: no elevation, so preflight's height holds
        }
    )


def _check(printer: PrinterSpec, material: Material, technology: Technology) -> None:
    if printer.technology is not technology or material.technology is not technology:
        raise ValueError(
            f"a {technology.value} profile needs a {technology.value} printer and material, "
            f"got {printer.technology.value} and {material.name}"
        )


def _bed_shape(x_mm: float, y_mm: float) -> str:
    return f"0x0,{x_mm:g}x0,{x_mm:g}x{y_mm:g},0x{y_mm:g}"


def _ini(values: dict[str, object]) -> str:
    return "".join(f"{key} = {value}\n" for key, value in values.items())
