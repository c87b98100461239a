"""The printing job kinds, run by the job runner in a worker process (ids in, rows read and written here):

- `printing.prepare {print_job_id}`: the artifact's mesh (PLY preferred) through preflight against the
  site's whole fleet; the orientations, per-printer placements and estimates, and the requirements the
  scheduler matches are stored on the print job, which becomes `ready`, or `refused` with the reasons of
  every printer when nothing in the fleet could ever print it.
- `printing.slice {print_job_id, printer_id}`: for the printer the scheduler chose, the part placed as
  preflight places it and sliced (PrusaSlicer G-code for FDM, an SL1 archive for resin, a layer-contour
  stack for metal, ceramic and bio); the file is stored as an artifact version (kind `print_file`, with
  its provenance) and the print job becomes `sliced`, which the supervisor uploads and starts.

Both are idempotent: a re-run (the runner re-runs jobs a dead server left behind) finds the print job
already moved on and does nothing, and the state changes are conditional on the state they start from.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import trimesh

from server.artifacts import store as artifacts
from server.artifacts.models import Artifact
from server.core import worker_context
from server.core.jobs import Progress, job_kind
from server.design.meshes import load_mesh
from server.design.tasks import mesh_limits, read_input
from server.printing import repository
from server.printing.fleet import PartClass, PrinterSpec, Purpose, Technology
from server.printing.models import PrintJob
from server.printing.orientation import best_placement, candidate_orientations
from server.printing.preflight import JOB, Preflight, PrintRequest, preflight
from server.printing.slicing import SliceResult, slice_part
from server.settings import Settings

SUFFIXES = {"gcode": ".gcode", "sl1": ".sl1", "layers": ".layers.json"}
FILE_FORMATS = {"gcode": "gcode", "sl1": "sl1", "layers": "json"}  # the artifact's `files` key
DEFAULT_SLICE_TIMEOUT_S = 900.0


def load_part(row: Artifact, settings: Settings | None = None) -> trimesh.Trimesh:
    source = read_input(row)  # PLY when the artifact has it: doubles, so the checked solid is the stored one
    return load_mesh(source.data, source.format, mesh_limits(settings or worker_context.settings()))


def part_volume_mm3(row: Artifact, settings: Settings) -> float:
    """The part's solid volume, as its artifact recorded it when it was made (else measured now)."""
    recorded = row.meta.get("volume_mm3")
    volume = float(recorded) if isinstance(recorded, int | float) else float(load_part(row, settings).volume)
    return max(volume, 0.0)


@job_kind("printing.prepare", timeout_s=600)
def prepare(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    db = worker_context.database()
    job_id = params["print_job_id"]
    with db.session() as session:
        job = repository.get_job(session, job_id)
        if job.state != "preparing":
            return {"print_job_id": job_id, "skipped": job.state}
        artifact = artifacts.get(session, job.artifact_id)
        specs = repository.fleet_specs(session, job.site_id)
        request = PrintRequest(
            part_class=PartClass(job.part_class),
            material=job.material,
            technology=Technology(job.technology) if job.technology else None,
            tags=frozenset(job.tags),
            site_id=job.site_id,
            purpose=Purpose(job.purpose),
        )
    progress(0.05, f"loading {artifact.name}")
    mesh = load_part(artifact)
    progress(0.3, f"preflight against {len(specs)} printers")
    report = preflight(mesh, request, specs)
    summary = preflight_json(report)
    with db.session() as session:
        if report.printable:
            fastest = report.ready()[0].printer_id if report.ready() else None
            repository.transition(
                session,
                job_id,
                allowed_from=("preparing",),
                changes={"state": "ready", "reason": "", "preflight": summary},
                who=repository.SYSTEM,
                what="ready",
                capable=sorted(summary["printers"]),
                fastest=fastest,
            )
        else:
            reason = refusal_reason(report)
            repository.transition(
                session,
                job_id,
                allowed_from=("preparing",),
                changes={"state": "refused", "reason": reason[:2000], "preflight": summary},
                who=repository.SYSTEM,
                what="refused",
                reason=reason,
            )
    progress(1.0, "printable" if report.printable else "refused: no printer can take it")
    return {"print_job_id": job_id, "printable": report.printable, "reasons": summary["reasons"]}


def refusal_reason(report: Preflight) -> str:
    """One sentence a technician can act on: what is wrong with the part, else why each printer cannot."""
    reasons = report.reasons()
    if JOB in reasons:
        return "cannot be printed: " + "; ".join(reasons[JOB])
    per_printer = "; ".join(f"{pid}: {', '.join(why)}" for pid, why in sorted(reasons.items()))
    return f"no printer in the fleet can print it — {per_printer}"


def preflight_json(report: Preflight) -> dict[str, Any]:
    mesh = report.mesh
    return {
        "printable": report.printable,
        "mesh": {
            "faces": mesh.faces,
            "volume_mm3": mesh.volume_mm3,
            "area_mm2": mesh.area_mm2,
            "extents_mm": list(mesh.extents_mm),
            "watertight": mesh.watertight,
            "manifold": mesh.manifold,
            "problems": list(mesh.problems),
        },
        "requirements": repository.requirements_json(report.requirements),
        "orientations": [
            {
                "index": o.index,
                "base": o.base,
                "box_mm": list(o.box_mm),
                "support_area_mm2": round(o.support_area_mm2, 1),
            }
            for o in report.orientations
        ],
        "printers": {
            o.printer_id: {
                "ready": o.ready,
                "setup": list(o.setup),
                "orientation": o.placement.orientation.index if o.placement else None,
                "turn_deg": o.placement.turn_deg if o.placement else None,
                "transform": [list(row) for row in o.placement.transform] if o.placement else None,
                "estimate": asdict(o.estimate) if o.estimate else None,
            }
            for o in report.outcomes
            if o.capable
        },
        "reasons": {key: list(why) for key, why in report.reasons().items()},
    }


@job_kind("printing.slice", timeout_s=1800)
def slice_for_printer(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    db, settings, blobs = worker_context.database(), worker_context.settings(), worker_context.blobs()
    job_id, printer_id = params["print_job_id"], params["printer_id"]
    with db.session() as session:
        job = repository.get_job(session, job_id)
        if job.state != "slicing" or job.printer_id != printer_id:
            return {"print_job_id": job_id, "skipped": job.state}
        artifact = artifacts.get(session, job.artifact_id)
        printer_row = repository.get_printer(session, printer_id)
        spec = repository.spec_of(printer_row)
    progress(0.02, f"loading {artifact.name}")
    mesh = load_part(artifact)
    placement = best_placement(mesh, candidate_orientations(mesh), spec.technology, spec.build_volume)
    if placement is None:
        raise ValueError(f"no orientation of {artifact.name} fits printer {printer_id} any more")
    work_root = settings.data_dir / "printing" / "work"
    work_root.mkdir(parents=True, exist_ok=True)
    timeout_s = float(getattr(settings, "printing_slice_timeout_s", DEFAULT_SLICE_TIMEOUT_S))
    with tempfile.TemporaryDirectory(dir=work_root) as work:
        result = slice_part(
            mesh,
            spec,
            Path(work),
            transform=placement.transform,
            timeout_s=timeout_s,
            progress=lambda fraction, message: progress(0.05 + 0.85 * fraction, message),
            binary=str(getattr(settings, "printing_slicer_binary", "prusa-slicer")),
        )
        progress(0.92, "storing the print file")
        ref = blobs.put_file(result.path, site_id=job.site_id)
    stored = _store_print_file(job, artifact, spec, result, ref.sha256, ref.size)
    entry = {
        "artifact_id": stored.id,
        "sha256": ref.sha256,
        "size": ref.size,
        "kind": result.kind,
        "suffix": SUFFIXES[result.kind],
        "slicer": result.slicer,
        "material": spec.material,
        "setup": repository.setup_key(printer_row),
        "orientation": placement.orientation.base,
        "turn_deg": placement.turn_deg,
        "extents_mm": list(placement.extents_mm),
        "estimate": asdict(result.estimate),
    }
    with db.session() as session:
        current = repository.get_job(session, job_id)
        moved = repository.transition(
            session,
            job_id,
            allowed_from=("slicing",),
            changes={
                "state": "sliced",
                "files": {**current.files, printer_id: entry},
                "layers": result.estimate.layers,
            },
            who=repository.SYSTEM,
            what="sliced",
            slicer=result.slicer,
            estimate_s=result.estimate.time_s,
            layers=result.estimate.layers,
        )
    progress(1.0, f"sliced: {result.estimate.layers} layers, about {result.estimate.time_s / 60:.0f} min")
    return {"print_job_id": job_id, "printer_id": printer_id, "file": entry, "applied": moved is not None}


def _store_print_file(
    print_job: PrintJob,
    source: Artifact,
    spec: PrinterSpec,
    result: SliceResult,
    sha256: str,
    size: int,
) -> Artifact:
    """The print file as an artifact version of the print job's lineage, traceable to the part it prints; a
    fit-check copy's file says so in its name."""
    job, job_id, purpose = worker_context.job(), print_job.id, print_job.purpose
    copy = " (fit check)" if purpose == Purpose.FIT_CHECK else ""
    with worker_context.database().session() as session:
        return artifacts.add_version(
            session,
            case_id=print_job.case_id,
            site_id=print_job.site_id,
            lineage_id=f"print-{job_id}",
            kind="print_file",
            name=f"{source.name}{copy} for {spec.name}",
            files={FILE_FORMATS[result.kind]: {"sha256": sha256, "size": size}},
            meta={
                "printer_id": spec.id,
                "technology": spec.technology.value,
                "purpose": purpose,
                "estimate": asdict(result.estimate),
            },
            provenance={
                "operation": "printing.slice",
                "inputs": [{"artifact_id": source.id}],
                "parameters": {
                    "printer_id": spec.id,
                    "material": spec.material,
                    "layer_mm": spec.layer_mm,
                    "nozzle_mm": spec.nozzle_mm,
                },
                "libraries": {"slicer": result.slicer},
                "user": job.get("submitted_by"),
                "job_id": job.get("id"),
                "print_job_id": job_id,
            },
            created_by=str(job.get("submitted_by") or repository.SYSTEM),
            room_id=job.get("room_id"),
            artifact_id=f"{job.get('id')}-print-file" if job.get("id") else None,
        )
