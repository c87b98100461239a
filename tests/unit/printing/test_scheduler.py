"""Scheduler rules, one at a time: order by need-by day, priority, age; manual assignment and order; the
bed-cleared gate; paused queues; refusal with reasons; no starvation; same input, same decision."""

from __future__ import annotations

import random

from server.printing.drivers.base import PrinterState
from server.printing.fit import box_orientations
from server.printing.fleet import JobRequirements, PartClass, Technology
from server.printing.scheduler import (
    DAY_S,
    PrinterView,
    Priority,
    QueuedJob,
    schedule,
)
from tests.unit.printing.parts import center_fleet, printer

H = 3600.0
MODEL = JobRequirements(PartClass.ANATOMICAL_MODEL, box_orientations(60, 40, 30), material="pla")


def idle(*specs, **kw) -> list[PrinterView]:  # type: ignore[no-untyped-def]
    return [PrinterView(s, PrinterState.IDLE, **kw) for s in specs]


def job(jid: str, created_h: float = 0.0, **kw) -> QueuedJob:  # type: ignore[no-untyped-def]
    return QueuedJob(jid, kw.pop("requirements", MODEL), created_h * H, **kw)


FDM = printer("fdm-01", Technology.FDM, (180, 180, 180), "pla")
FDM_BIG = printer("fdm-04", Technology.FDM, (300, 300, 400), "pla")


def test_earlier_surgery_goes_first_then_priority_then_age() -> None:
    jobs = [
        job("routine-old", 0),
        job("urgent-new", 5, priority=Priority.URGENT),
        job("surgery-late", 6, surgery_at_s=20 * DAY_S),
        job("surgery-soon", 7, surgery_at_s=3 * DAY_S),  # needed by day 1 (2-day margin)
        job("routine-new", 1),
    ]
    decision = schedule(idle(FDM), jobs)
    assert [s.job_id for s in decision.starts] == ["surgery-soon"]  # same need-by day as urgent-new
    assert [w.job_id for w in decision.waiting] == ["urgent-new", "routine-old", "routine-new", "surgery-late"]


def test_the_smallest_ready_printer_is_taken_so_big_ones_stay_free() -> None:
    big_part = JobRequirements(PartClass.ANATOMICAL_MODEL, box_orientations(280, 100, 100), material="pla")
    decision = schedule(idle(FDM_BIG, FDM), [job("small", 0), job("big", 1, requirements=big_part)])
    assert {(s.job_id, s.printer_id) for s in decision.starts} == {("small", "fdm-01"), ("big", "fdm-04")}


def test_manual_assignment_is_honoured_even_when_another_printer_is_free() -> None:
    decision = schedule(idle(FDM, FDM_BIG), [job("mine", 0, assigned_printer_id="fdm-04"), job("other", 1)])
    assert {(s.job_id, s.printer_id) for s in decision.starts} == {("mine", "fdm-04"), ("other", "fdm-01")}
    busy = [PrinterView(FDM, PrinterState.IDLE), PrinterView(FDM_BIG, PrinterState.PRINTING)]
    decision = schedule(busy, [job("mine", 0, assigned_printer_id="fdm-04")])
    assert decision.starts == ()
    assert decision.waiting[0].reason == "assigned printer fdm-04 (printing)"


def test_assignment_to_a_printer_that_cannot_is_refused() -> None:
    sla = printer("sla-01", Technology.SLA, (145, 145, 185), "resin_standard")
    decision = schedule(idle(FDM, sla), [job("mine", 0, assigned_printer_id="sla-01")])
    (refusal,) = decision.refusals
    assert refusal.reason == (
        "assigned to printer sla-01, which cannot take it: an SLA/DLP resin printer cannot print PLA: "
        "it needs an FDM printer"
    )


def test_manual_order_goes_ahead_of_everything() -> None:
    jobs = [job("emergency", 0, priority=Priority.EMERGENCY), job("moved-up", 50, manual_rank=1)]
    assert [s.job_id for s in schedule(idle(FDM), jobs).starts] == ["moved-up"]


def test_bed_not_cleared_and_paused_printers_take_nothing() -> None:
    views = [
        PrinterView(FDM, PrinterState.IDLE, bed_clear=False),
        PrinterView(FDM_BIG, PrinterState.IDLE, queue_paused=True),
    ]
    decision = schedule(views, [job("a", 0)])
    assert decision.starts == ()
    assert decision.waiting[0].reason == "waiting for fdm-01 (bed-not-cleared), fdm-04 (queue paused)"
    state_only = [PrinterView(FDM, PrinterState.BED_NOT_CLEARED)]
    assert schedule(state_only, [job("a", 0)]).starts == ()
    cleared = [PrinterView(FDM, PrinterState.IDLE, bed_clear=True)]
    assert [s.printer_id for s in schedule(cleared, [job("a", 0)]).starts] == ["fdm-01"]


def test_a_job_waiting_for_setup_says_what_the_operator_must_do() -> None:
    petg = JobRequirements(PartClass.ANATOMICAL_MODEL, box_orientations(60, 40, 30), material="petg")
    decision = schedule(idle(FDM), [job("p", 0, requirements=petg)])
    assert decision.waiting[0].reason == "needs an operator: fdm-01: material PLA is loaded, the job needs PETG"
    assert decision.refusals == ()


def test_impossible_job_is_refused_with_the_reason_of_every_printer() -> None:
    fleet = center_fleet()
    huge = JobRequirements(PartClass.ANATOMICAL_MODEL, box_orientations(500, 450, 420))
    decision = schedule([PrinterView(p, PrinterState.IDLE) for p in fleet], [job("huge", 0, requirements=huge)])
    (refusal,) = decision.refusals
    assert refusal.reason == "no printer in the fleet can print it"
    assert set(refusal.printer_reasons) == {p.id for p in fleet}
    assert refusal.printer_reasons["fdm-07"] == (
        "build volume 350×350×350 mm is too small for a part of 500×450×420 mm in any orientation",  # noqa: RUF001
    )
    assert refusal.printer_reasons["met-02"][0].startswith("a metal (SLM/DMLS) printer cannot print an anatomical")
    wrong = JobRequirements(PartClass.GUIDE, ((40, 30, 10),), material="pla")
    (refusal,) = schedule([], [job("wrong", 0, requirements=wrong)]).refusals
    assert refusal.reason == "material PLA is not allowed for a guide: needs biocompatible resin"


def test_same_input_same_decision_whatever_the_order() -> None:
    fleet = center_fleet()
    rng = random.Random(3)
    views = [PrinterView(p, PrinterState.IDLE) for p in fleet]
    jobs = [
        job(f"j{i}", rng.uniform(0, 48), priority=Priority(rng.randrange(4)), requirements=MODEL) for i in range(30)
    ]
    first = schedule(views, jobs)
    for _ in range(5):
        rng.shuffle(views)
        rng.shuffle(jobs)
        assert schedule(views, jobs) == first


def test_a_routine_job_is_not_starved_by_a_stream_of_urgent_work() -> None:
    """One printer, an urgent 2-hour job every 2 hours for 30 days: strict priority would never run the
    routine job; by need-by day it runs once its 14-day lead time is up."""
    views = idle(FDM)
    queue = [job("routine", 0)]
    started_at = None
    t = 0.0
    n = 0
    while t < 30 * DAY_S and started_at is None:
        queue.append(job(f"urgent-{n}", t / H, priority=Priority.URGENT))
        n += 1
        (start,) = schedule(views, queue).starts
        if start.job_id == "routine":
            started_at = t
        queue = [j for j in queue if j.id != start.job_id]
        t += 2 * H
    assert started_at is not None
    assert 13 * DAY_S <= started_at <= 15 * DAY_S
