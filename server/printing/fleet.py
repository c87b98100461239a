"""The fleet's vocabulary and rules: technologies, materials, part classes, printers, and whether a
printer can take a part.

- `Technology`: fdm, sla (SLA/DLP resin), metal (SLM/DMLS), ceramic, bio.
- `MATERIALS`: the registry, key -> `Material` (the technology that prints it, polymer or not,
  biocompatible or not, implant grade or not, density, FDM temperatures).
- `PartClass` and `material_problem`: a guide needs biocompatible resin, an implant Ti6Al4V on a metal
  printer, an anatomical model any polymer; a scaffold a biocompatible ceramic, a tissue a bioink (these
  two are Trinity's, so that ceramic and bio printers have parts they may print).
- `Purpose`: what the print is for. `clinical` (the default) is the part itself, bound by the rules above;
  `fit_check` is a non-sterile rehearsal copy of a guide or an implant that the team tries on the bone
  model before the real part is made, so any polymer will do (PLA or PETG on FDM, resin).
- `PrinterSpec`: what a printer is (build volume, loaded material, nozzle, layer height, tags, site...).
  Validated on construction (`InvalidPrinterSpec`).
- `JobRequirements`: what a job needs, with its bounding box in each candidate orientation
  (from `preflight`), so the scheduler can match jobs to printers without the mesh.
- Checks return reasons, not booleans, so "no printer can take it" always says why:
  `request_problems` (the job itself), `capability_problems` (what the printer can never do: site,
  technology, build volume, tags) and `setup_problems` (what an operator can change: the loaded material,
  the nozzle). Whether a box fits a build volume is `fit.py`'s.

Units: millimetres, degrees, grams per cubic centimetre, degrees Celsius. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from server.printing.drivers.base import BuildVolume
from server.printing.errors import InvalidPrinterSpec, UnknownMaterial
from server.printing.fit import Box, fit_job, smallest_box

TIMES = "\u00d7"  # the multiplication sign, as in "build volume 180 x 180 mm" written properly


class Technology(StrEnum):
    FDM = "fdm"
    SLA = "sla"  # SLA and DLP resin printers
    METAL = "metal"  # SLM / DMLS powder bed
    CERAMIC = "ceramic"
    BIO = "bio"  # bioink extrusion


TECHNOLOGY_NAMES = {
    Technology.FDM: "FDM",
    Technology.SLA: "SLA/DLP resin",
    Technology.METAL: "metal (SLM/DMLS)",
    Technology.CERAMIC: "ceramic",
    Technology.BIO: "bio",
}


class PartClass(StrEnum):
    ANATOMICAL_MODEL = "anatomical_model"
    GUIDE = "guide"
    IMPLANT = "implant"
    # Beyond the plan's three: without them nothing could ever go to the ceramic and bio printers.
    SCAFFOLD = "scaffold"  # a bone substitute in a biocompatible ceramic
    TISSUE = "tissue"  # a bioprinted construct


class Purpose(StrEnum):
    CLINICAL = "clinical"  # the part itself
    FIT_CHECK = "fit_check"  # a non-sterile polymer copy of a guide or implant, to check fit on the bone model


FIT_CHECK_CLASSES = frozenset({PartClass.GUIDE, PartClass.IMPLANT})

PART_CLASS_NEEDS = {
    PartClass.ANATOMICAL_MODEL: "a polymer",
    PartClass.GUIDE: "biocompatible resin",
    PartClass.IMPLANT: "Ti6Al4V on a metal printer",
    PartClass.SCAFFOLD: "a biocompatible ceramic",
    PartClass.TISSUE: "a bioink",
}

DEFAULT_LAYER_HEIGHT_MM = {
    Technology.FDM: 0.2,
    Technology.SLA: 0.05,
    Technology.METAL: 0.03,
    Technology.CERAMIC: 0.025,
    Technology.BIO: 0.3,
}


@dataclass(frozen=True)
class Material:
    key: str
    name: str
    technology: Technology
    density_g_cm3: float
    polymer: bool = False
    biocompatible: bool = False
    implant_grade: bool = False
    nozzle_c: float | None = None  # FDM and bio extrusion temperatures
    bed_c: float | None = None


MATERIALS: dict[str, Material] = {
    m.key: m
    for m in (
        Material("pla", "PLA", Technology.FDM, 1.24, polymer=True, nozzle_c=210, bed_c=60),
        Material("petg", "PETG", Technology.FDM, 1.27, polymer=True, nozzle_c=240, bed_c=80),
        Material("pa12", "PA12", Technology.FDM, 1.01, polymer=True, nozzle_c=260, bed_c=90),
        Material("tpu", "TPU 95A", Technology.FDM, 1.21, polymer=True, nozzle_c=225, bed_c=50),
        Material("resin_standard", "standard resin", Technology.SLA, 1.10, polymer=True),
        Material("resin_biocompatible", "biocompatible resin", Technology.SLA, 1.18, polymer=True, biocompatible=True),
        Material("ti6al4v", "Ti6Al4V", Technology.METAL, 4.43, biocompatible=True, implant_grade=True),
        Material("ss316l", "stainless steel 316L", Technology.METAL, 7.99),
        Material("hydroxyapatite", "hydroxyapatite ceramic", Technology.CERAMIC, 3.16, biocompatible=True),
        Material("zirconia", "zirconia", Technology.CERAMIC, 6.05, biocompatible=True),
        Material("bioink_gelma", "GelMA bioink", Technology.BIO, 1.05, biocompatible=True, nozzle_c=25, bed_c=10),
        Material("bioink_alginate", "alginate bioink", Technology.BIO, 1.02, biocompatible=True, nozzle_c=22, bed_c=20),
    )
}


def material(key: str) -> Material:
    try:
        return MATERIALS[key]
    except KeyError:
        raise UnknownMaterial(f"unknown material {key!r}; known: {', '.join(sorted(MATERIALS))}") from None


def purpose_problem(part_class: PartClass, purpose: Purpose) -> str | None:
    """Why a print of this class cannot have this purpose, or None when it can."""
    if purpose is Purpose.FIT_CHECK and part_class not in FIT_CHECK_CLASSES:
        return f"a fit-check copy is made of a guide or an implant, not of {_article(part_class)}"
    return None


def material_problem(part_class: PartClass, mat: Material, purpose: Purpose = Purpose.CLINICAL) -> str | None:
    """Why `mat` may not make a part of this class for this purpose, or None when it may."""
    if purpose is Purpose.FIT_CHECK and part_class in FIT_CHECK_CLASSES:
        if mat.polymer:
            return None
        return f"material {mat.name} is not allowed for {_part(part_class, purpose)}: needs a polymer"
    if part_class is PartClass.ANATOMICAL_MODEL:
        allowed = mat.polymer
    elif part_class is PartClass.GUIDE:
        allowed = mat.technology is Technology.SLA and mat.biocompatible
    elif part_class is PartClass.IMPLANT:
        allowed = mat.implant_grade and mat.technology is Technology.METAL
    elif part_class is PartClass.SCAFFOLD:
        allowed = mat.technology is Technology.CERAMIC and mat.biocompatible
    else:
        allowed = mat.technology is Technology.BIO
    if allowed:
        return None
    return f"material {mat.name} is not allowed for {_article(part_class)}: needs {PART_CLASS_NEEDS[part_class]}"


def allowed_materials(part_class: PartClass, purpose: Purpose = Purpose.CLINICAL) -> tuple[Material, ...]:
    return tuple(m for m in MATERIALS.values() if material_problem(part_class, m, purpose) is None)


@dataclass(frozen=True)
class PrinterSpec:
    id: str
    name: str
    site_id: str
    technology: Technology
    build_volume: BuildVolume
    material: str | None = None  # the loaded material's key; None when nothing is loaded
    nozzle_mm: float | None = None  # extruders (FDM, bio, ceramic paste); None for resin and powder
    layer_height_mm: float | None = None  # None: the technology's default
    tags: frozenset[str] = frozenset()
    location: str = ""
    driver: str = "simulator"  # "octoprint" | "moonraker" | "simulator"

    def __post_init__(self) -> None:
        volume = self.build_volume
        if min(volume.x_mm, volume.y_mm, volume.z_mm) <= 0:
            raise InvalidPrinterSpec(f"printer {self.id}: build volume must be positive, got {_dims(volume)} mm")
        if self.material is not None:
            loaded = material(self.material)
            if loaded.technology is not self.technology:
                raise InvalidPrinterSpec(
                    f"printer {self.id}: a {self.technology.value} printer cannot be loaded with {loaded.name} "
                    f"({loaded.technology.value})"
                )
        if self.technology is Technology.FDM and self.nozzle_mm is None:
            raise InvalidPrinterSpec(f"printer {self.id}: an FDM printer needs nozzle_mm")
        if self.nozzle_mm is not None and self.nozzle_mm <= 0:
            raise InvalidPrinterSpec(f"printer {self.id}: nozzle_mm must be positive")
        if self.layer_height_mm is not None and self.layer_height_mm <= 0:
            raise InvalidPrinterSpec(f"printer {self.id}: layer_height_mm must be positive")
        if self.nozzle_mm is not None and self.layer_mm > 0.8 * self.nozzle_mm:
            raise InvalidPrinterSpec(
                f"printer {self.id}: layer height {self.layer_mm} mm is over 80% of the {self.nozzle_mm} mm nozzle"
            )

    @property
    def layer_mm(self) -> float:
        return self.layer_height_mm or DEFAULT_LAYER_HEIGHT_MM[self.technology]

    @property
    def loaded(self) -> Material | None:
        return MATERIALS[self.material] if self.material is not None else None


@dataclass(frozen=True)
class JobRequirements:
    """What a job needs from a printer. `boxes_mm` holds the part's bounding box in each candidate
    orientation preflight found (z is the build direction); the part fits a printer when any one of them
    fits, turned about Z as needed. `material` None: any material allowed for the part class (and
    `technology`, when given)."""

    part_class: PartClass
    boxes_mm: tuple[Box, ...]
    material: str | None = None
    technology: Technology | None = None
    nozzle_mm: float | None = None
    tags: frozenset[str] = frozenset()
    site_id: str | None = None  # None: a printer at any site will do
    purpose: Purpose = Purpose.CLINICAL

    def materials(self) -> tuple[Material, ...]:
        """The materials that would do for this job (empty when the request itself is wrong)."""
        if self.material is not None:
            candidates: Iterable[Material] = (MATERIALS[self.material],) if self.material in MATERIALS else ()
        else:
            candidates = MATERIALS.values()
        return tuple(
            m
            for m in candidates
            if material_problem(self.part_class, m, self.purpose) is None
            and (self.technology is None or m.technology is self.technology)
        )

    def technologies(self) -> frozenset[Technology]:
        return frozenset(m.technology for m in self.materials())


def request_problems(req: JobRequirements) -> list[str]:
    """What is wrong with the job itself, whatever the fleet (unknown or unsuitable material...)."""
    if (problem := purpose_problem(req.part_class, req.purpose)) is not None:
        return [problem]
    problems = []
    if req.material is not None:
        if req.material not in MATERIALS:
            return [f"unknown material {req.material!r}"]
        mat = MATERIALS[req.material]
        if (problem := material_problem(req.part_class, mat, req.purpose)) is not None:
            problems.append(problem)
        if req.technology is not None and mat.technology is not req.technology:
            problems.append(f"material {mat.name} is printed by {mat.technology.value}, not {req.technology.value}")
    elif not req.materials():
        tech = req.technology.value if req.technology else "any"
        problems.append(f"no {tech} material is allowed for {_part(req.part_class, req.purpose)}")
    if not req.boxes_mm:
        problems.append("the part has no size (no orientation from preflight)")
    return problems


def capability_problems(printer: PrinterSpec, req: JobRequirements) -> list[str]:
    """Why this printer can never take the job, whatever is loaded on it; empty when it can."""
    problems = []
    if req.site_id is not None and printer.site_id != req.site_id:
        problems.append(f"printer is at site {printer.site_id}, the job belongs to site {req.site_id}")
    technologies = req.technologies()
    if technologies and printer.technology not in technologies:
        wanted = " or ".join(TECHNOLOGY_NAMES[t] for t in Technology if t in technologies)
        this = _a(TECHNOLOGY_NAMES[printer.technology])
        problems.append(f"{this} printer cannot print {_what(req)}: it needs {_a(wanted)} printer")
    if req.boxes_mm and fit_job(printer.build_volume, req.boxes_mm) is None:
        problems.append(
            f"build volume {_dims(printer.build_volume)} mm is too small for a part of "
            f"{_box_dims(smallest_box(req.boxes_mm))} mm in any orientation"
        )
    if missing := sorted(req.tags - printer.tags):
        problems.append(f"lacks tag{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    return problems


def setup_problems(printer: PrinterSpec, req: JobRequirements) -> list[str]:
    """What an operator must change before this (capable) printer can take the job; empty when ready."""
    problems = []
    wanted = [m for m in req.materials() if m.technology is printer.technology]
    loaded = printer.loaded
    if loaded is None:
        problems.append(f"no material loaded (needs {_names(wanted)})")
    elif loaded not in wanted:
        if (problem := material_problem(req.part_class, loaded, req.purpose)) is not None:
            problems.append(problem)
        else:
            problems.append(f"material {loaded.name} is loaded, the job needs {_names(wanted)}")
    if req.nozzle_mm is not None and (printer.nozzle_mm is None or abs(printer.nozzle_mm - req.nozzle_mm) > 1e-6):
        problems.append(f"nozzle {printer.nozzle_mm} mm, the job needs {req.nozzle_mm} mm")
    return problems


def _article(part_class: PartClass) -> str:
    return _a(part_class.value.replace("_", " "))


def _part(part_class: PartClass, purpose: Purpose) -> str:
    if purpose is Purpose.FIT_CHECK:
        return f"a fit-check copy of {_article(part_class)}"
    return _article(part_class)


def _a(words: str) -> str:
    return f"an {words}" if words[0] in "aeiouAEFHILMNORSX" else f"a {words}"


def _what(req: JobRequirements) -> str:
    if req.material is not None and req.material in MATERIALS:
        return MATERIALS[req.material].name
    return _part(req.part_class, req.purpose)


def _names(materials: Iterable[Material]) -> str:
    names = [m.name for m in materials]
    return " or ".join(names) if names else "a material this printer cannot hold"


def _fmt(value_mm: float) -> str:
    return f"{round(value_mm, 1):g}"


def _dims(volume: BuildVolume) -> str:
    return TIMES.join(_fmt(v) for v in (volume.x_mm, volume.y_mm, volume.z_mm))


def _box_dims(box: Box) -> str:
    return TIMES.join(_fmt(v) for v in sorted(box, reverse=True))


@dataclass(frozen=True)
class Capability:
    """One printer against one job: why never (`problems`), what to change first (`setup`)."""

    printer_id: str
    problems: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    fit: tuple[int, float] | None = None  # (index into boxes_mm, turn about Z in degrees)

    @property
    def capable(self) -> bool:
        return not self.problems

    @property
    def ready(self) -> bool:
        return not self.problems and not self.setup


def assess(printer: PrinterSpec, req: JobRequirements) -> Capability:
    problems = tuple(capability_problems(printer, req))
    return Capability(
        printer.id,
        problems,
        () if problems else tuple(setup_problems(printer, req)),
        None if problems else fit_job(printer.build_volume, req.boxes_mm),
    )
