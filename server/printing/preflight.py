"""Preflight: can this part be printed, on which printers, which way up, in how long, with how much material.

    report = preflight(mesh, PrintRequest(PartClass.GUIDE), printers)
    report.printable          # some printer could take it (maybe after loading a material)
    report.ready()            # the outcomes of printers that could start it as they are now
    report.reasons()          # {printer id: why not}, plus "job" for what is wrong whatever the printer
    report.requirements       # JobRequirements for the scheduler (boxes of every candidate orientation)

Per printer: the mesh must be a closed, manifold, outward-facing solid (`check_mesh`, using the design
package's topology); the request must make sense (material allowed for the part class: guide ->
biocompatible resin, implant -> Ti6Al4V, model -> any polymer; a fit-check copy of a guide or implant ->
any polymer); the printer must be capable (site,
technology, build volume in some orientation, tags: `fleet.capability_problems`) and is ready when its
loaded material and nozzle suit the job (`fleet.setup_problems`). For each capable printer the best
orientation for its technology that fits is placed (`orientation.place`: the 4x4 transform is
recorded) and the print is estimated (`estimates`). Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import trimesh

from server.design import topology
from server.printing.errors import MeshNotPrintable
from server.printing.estimates import PrintEstimate, estimate_print
from server.printing.fleet import (
    JobRequirements,
    Material,
    PartClass,
    PrinterSpec,
    Purpose,
    Technology,
    assess,
    request_problems,
)
from server.printing.orientation import Orientation, Placement, best_placement, candidate_orientations

JOB = "job"  # the key of job-level reasons in `Preflight.reasons()`


@dataclass(frozen=True)
class MeshReport:
    faces: int
    volume_mm3: float
    area_mm2: float
    extents_mm: tuple[float, float, float]
    watertight: bool
    manifold: bool
    problems: tuple[str, ...]

    @property
    def printable(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class PrintRequest:
    """What the plan asks for; `material` None: any material allowed for the part class and purpose."""

    part_class: PartClass
    material: str | None = None
    technology: Technology | None = None
    nozzle_mm: float | None = None
    tags: frozenset[str] = frozenset()
    site_id: str | None = None
    purpose: Purpose = Purpose.CLINICAL


@dataclass(frozen=True)
class PrinterOutcome:
    printer_id: str
    problems: tuple[str, ...]  # why this printer can never take the job
    setup: tuple[str, ...]  # what an operator must change first (load a material, swap the nozzle)
    placement: Placement | None = None
    estimate: PrintEstimate | None = None

    @property
    def capable(self) -> bool:
        return not self.problems

    @property
    def ready(self) -> bool:
        return not self.problems and not self.setup


@dataclass(frozen=True)
class Preflight:
    mesh: MeshReport
    job_problems: tuple[str, ...]  # the mesh or the request, whatever the printer
    requirements: JobRequirements
    orientations: tuple[Orientation, ...]
    outcomes: tuple[PrinterOutcome, ...]

    @property
    def printable(self) -> bool:
        return not self.job_problems and any(o.capable for o in self.outcomes)

    def ready(self) -> tuple[PrinterOutcome, ...]:
        """Printers that could start it now, fastest first."""
        if self.job_problems:
            return ()
        ready = [o for o in self.outcomes if o.ready]
        return tuple(sorted(ready, key=lambda o: (o.estimate.time_s if o.estimate else 0.0, o.printer_id)))

    def reasons(self) -> dict[str, tuple[str, ...]]:
        """Why not, per printer (capability, then setup), and under "job" what no printer could fix."""
        reasons = {o.printer_id: o.problems + o.setup for o in self.outcomes if not o.ready}
        if self.job_problems:
            reasons[JOB] = self.job_problems
        if not self.outcomes:
            reasons[JOB] = (*self.job_problems, "the fleet has no printers")
        return reasons


def check_mesh(mesh: trimesh.Trimesh) -> MeshReport:
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if len(faces) == 0:
        return MeshReport(0, 0.0, 0.0, (0.0, 0.0, 0.0), False, False, ("the mesh has no triangles",))
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    edges = topology.edge_topology(faces)
    bad_vertices = topology.nonmanifold_vertices(faces, edges)
    watertight = topology.is_watertight(faces)
    manifold = edges.nonmanifold_edges == 0 and bad_vertices == 0
    problems = []
    if edges.boundary_edges:
        problems.append(f"not watertight: {_count(edges.boundary_edges, 'open edge')} (holes in the surface)")
    if edges.nonmanifold_edges:
        problems.append(f"not manifold: {_count(edges.nonmanifold_edges, 'edge')} shared by more than two triangles")
    if bad_vertices:
        problems.append(f"not manifold: {_count(bad_vertices, 'vertex', 'vertices')} where surfaces only touch")
    if conflicts := topology.winding_conflicts(edges):
        problems.append(f"inconsistent winding: {_count(conflicts, 'edge')} between flipped triangles")
    volume = float(mesh.volume) if watertight else 0.0
    if watertight and volume <= 0:
        problems.append("inside out: the surface faces inwards (negative volume)")
    extents = np.ptp(vertices[np.unique(faces)], axis=0)
    return MeshReport(
        faces=len(faces),
        volume_mm3=round(volume, 3),
        area_mm2=round(float(mesh.area), 3),
        extents_mm=(float(extents[0]), float(extents[1]), float(extents[2])),
        watertight=watertight,
        manifold=manifold,
        problems=tuple(problems),
    )


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def require_printable(mesh: trimesh.Trimesh) -> MeshReport:
    """`check_mesh`, raising MeshNotPrintable with every problem when there is one."""
    report = check_mesh(mesh)
    if report.problems:
        raise MeshNotPrintable("the mesh cannot be printed: " + "; ".join(report.problems), problems=report.problems)
    return report


def requirements_for(request: PrintRequest, orientations: Sequence[Orientation]) -> JobRequirements:
    return JobRequirements(
        part_class=request.part_class,
        boxes_mm=tuple(o.box_mm for o in orientations),
        material=request.material,
        technology=request.technology,
        nozzle_mm=request.nozzle_mm,
        tags=request.tags,
        site_id=request.site_id,
        purpose=request.purpose,
    )


def preflight(
    mesh: trimesh.Trimesh, request: PrintRequest, printers: Sequence[PrinterSpec], *, max_facets: int = 12
) -> Preflight:
    report = check_mesh(mesh)
    orientations = candidate_orientations(mesh, max_facets=max_facets) if report.faces else ()
    requirements = requirements_for(request, orientations)
    job_problems = (*report.problems, *request_problems(requirements))
    outcomes = tuple(
        _outcome(mesh, report, requirements, orientations, printer) for printer in sorted(printers, key=lambda p: p.id)
    )
    return Preflight(report, job_problems, requirements, orientations, outcomes)


def _outcome(
    mesh: trimesh.Trimesh,
    report: MeshReport,
    requirements: JobRequirements,
    orientations: tuple[Orientation, ...],
    printer: PrinterSpec,
) -> PrinterOutcome:
    capability = assess(printer, requirements)
    if not capability.capable:
        return PrinterOutcome(printer.id, capability.problems, ())
    placement = best_placement(mesh, orientations, printer.technology, printer.build_volume)
    if placement is None:  # cannot happen: assess found a box that fits; kept as a guard, with a reason
        return PrinterOutcome(printer.id, ("no orientation of the part fits the build volume",), ())
    estimate = None
    if report.printable:
        material = printer.loaded if capability.ready else _wanted_material(requirements, printer)
        estimate = estimate_print(
            printer.technology,
            material,
            volume_mm3=report.volume_mm3,
            area_mm2=report.area_mm2,
            height_mm=placement.extents_mm[2],
            support_area_mm2=placement.orientation.support_area_mm2,
            layer_mm=printer.layer_mm,
        )
    return PrinterOutcome(printer.id, (), capability.setup, placement, estimate)


def _wanted_material(requirements: JobRequirements, printer: PrinterSpec) -> Material | None:
    return next((m for m in requirements.materials() if m.technology is printer.technology), None)
