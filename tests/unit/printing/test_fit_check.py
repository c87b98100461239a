"""Fit-check copies: a non-sterile polymer copy of a guide or an implant, printed to try on the bone model
before the real part is made, may go to FDM (and resin) printers; the guide itself still needs
biocompatible resin and the implant Ti6Al4V, and a fit-check copy is only ever of a guide or an implant."""

from __future__ import annotations

from server.printing.drivers.base import PrinterState
from server.printing.fit import box_orientations
from server.printing.fleet import (
    JobRequirements,
    PartClass,
    Purpose,
    Technology,
    allowed_materials,
    material,
    material_problem,
    purpose_problem,
    request_problems,
)
from server.printing.preflight import JOB, PrintRequest, preflight
from server.printing.scheduler import PrinterView, QueuedJob, schedule
from tests.unit.printing.parts import center_fleet, guide_plate, printer

FIT_CHECK = Purpose.FIT_CHECK


def test_a_fit_check_copy_may_be_any_polymer_the_clinical_part_may_not() -> None:
    polymers = [m.key for m in allowed_materials(PartClass.GUIDE, FIT_CHECK)]
    assert polymers == ["pla", "petg", "pa12", "tpu", "resin_standard", "resin_biocompatible"]
    assert allowed_materials(PartClass.IMPLANT, FIT_CHECK) == allowed_materials(PartClass.GUIDE, FIT_CHECK)
    assert material_problem(PartClass.GUIDE, material("pla"), FIT_CHECK) is None
    assert material_problem(PartClass.GUIDE, material("pla")) == (
        "material PLA is not allowed for a guide: needs biocompatible resin"
    )
    assert material_problem(PartClass.IMPLANT, material("ti6al4v"), FIT_CHECK) == (
        "material Ti6Al4V is not allowed for a fit-check copy of an implant: needs a polymer"
    )


def test_a_fit_check_copy_is_only_of_a_guide_or_an_implant() -> None:
    assert purpose_problem(PartClass.GUIDE, FIT_CHECK) is None
    assert purpose_problem(PartClass.IMPLANT, FIT_CHECK) is None
    assert purpose_problem(PartClass.ANATOMICAL_MODEL, FIT_CHECK) == (
        "a fit-check copy is made of a guide or an implant, not of an anatomical model"
    )
    model = JobRequirements(PartClass.ANATOMICAL_MODEL, box_orientations(60, 40, 30), purpose=FIT_CHECK)
    assert request_problems(model) == [purpose_problem(PartClass.ANATOMICAL_MODEL, FIT_CHECK)]


def test_preflight_sends_the_guide_to_resin_and_its_fit_check_copy_to_fdm_too() -> None:
    fleet = center_fleet()
    mesh = guide_plate()
    clinical = preflight(mesh, PrintRequest(PartClass.GUIDE), fleet)
    assert {o.printer_id for o in clinical.ready()} == {"sla-01", "sla-02", "sla-03"}

    copy = preflight(mesh, PrintRequest(PartClass.GUIDE, purpose=FIT_CHECK), fleet)
    ready = {o.printer_id for o in copy.ready()}
    assert {"fdm-01", "fdm-02", "fdm-03", "sla-04", "sla-01"} <= ready
    assert not any(p.startswith(("met-", "cer-", "bio-")) for p in ready)
    assert copy.reasons()["met-01"] == (
        "a metal (SLM/DMLS) printer cannot print a fit-check copy of a guide: it needs an FDM or SLA/DLP resin printer",
    )
    assert copy.requirements.purpose is FIT_CHECK


def test_a_fit_check_copy_in_titanium_is_refused_with_the_reason() -> None:
    report = preflight(guide_plate(), PrintRequest(PartClass.IMPLANT, material="ti6al4v", purpose=FIT_CHECK), [])
    assert not report.printable
    assert (
        report.reasons()[JOB][0]
        == "material Ti6Al4V is not allowed for a fit-check copy of an implant: needs a polymer"
    )


def test_the_scheduler_starts_a_fit_check_copy_on_an_fdm_printer_and_the_guide_only_on_resin() -> None:
    fdm = PrinterView(printer("fdm-01", Technology.FDM, (180, 180, 180), "pla"), PrinterState.IDLE)
    boxes = box_orientations(40, 30, 8)
    jobs = [
        QueuedJob("copy", JobRequirements(PartClass.GUIDE, boxes, purpose=FIT_CHECK), created_at_s=0.0),
        QueuedJob("guide", JobRequirements(PartClass.GUIDE, boxes), created_at_s=1.0),
    ]
    decision = schedule([fdm], jobs)
    assert [(s.job_id, s.printer_id) for s in decision.starts] == [("copy", "fdm-01")]
    assert [r.job_id for r in decision.refusals] == ["guide"]
    assert decision.refusals[0].printer_reasons["fdm-01"] == (
        "an FDM printer cannot print a guide: it needs an SLA/DLP resin printer",
    )
