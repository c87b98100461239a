"""Which queued job starts on which idle printer now. Pure and deterministic: same inputs, same decision.

    decision = schedule(printers, jobs)
    decision.starts     # Start(job_id, printer_id, box_index, turn_deg): start these now
    decision.refusals   # Refusal(job_id, reason, printer_reasons): no printer could ever take them
    decision.waiting    # Wait(job_id, reason): in queue order, each with why it is not starting

Order. Every job has a *need-by* time: its surgery time less `surgery_margin_s` (sterilization and
delivery), or, without a surgery, its creation time plus its priority's lead time. Jobs go by the day
of their need-by, then those for a surgery first, then priority, then age (creation time), then id.
Jobs an operator placed by hand (`manual_rank`) go first, by rank.

No starvation: a waiting job's need-by never changes, and a job created later can only go ahead of it
if it is needed earlier (an imminent surgery, or more urgent work created within the waiting job's
lead time); once its need-by day has come it waits only for jobs needed that same day or earlier,
never for the stream of new routine work. This is aging by lead time: a routine job is as pressing as
an urgent one `lead_time_s[ROUTINE] - lead_time_s[URGENT]` after it was queued.

Printers. Only an IDLE printer whose queue is not paused takes a job: a printer that finished a print
stays BED_NOT_CLEARED (state, or `bed_clear=False`) until an operator confirms the bed is clear; PAUSED,
PRINTING, ERROR, OFFLINE and MAINTENANCE printers take nothing, nor does a printer whose queue an
operator or a printer error paused. A job manually assigned to a printer runs only there, before the
unassigned jobs that printer could take. An unassigned job takes the smallest ready printer (by
build volume, then id), which keeps big printers free for the parts only they can hold.

Refusal. A job is refused, not left waiting, when nothing could ever print it: its request is wrong
(material not allowed for its part class), or every printer lacks the site, technology, build volume
or tags (`fleet.capability_problems`), or it is assigned to a printer that cannot. A job that only
needs an operator to load a material or change a nozzle waits, and its `Wait.reason` says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType

from server.printing.drivers.base import PrinterState
from server.printing.fleet import Capability, JobRequirements, PrinterSpec, assess, request_problems

DAY_S = 86400.0


class Priority(IntEnum):
    ROUTINE = 0
    SOON = 1
    URGENT = 2
    EMERGENCY = 3


@dataclass(frozen=True)
class SchedulingPolicy:
    lead_time_s: Mapping[Priority, float] = field(
        default_factory=lambda: MappingProxyType(
            {
                Priority.ROUTINE: 14 * DAY_S,
                Priority.SOON: 5 * DAY_S,
                Priority.URGENT: 1 * DAY_S,
                Priority.EMERGENCY: 0.0,
            }
        )
    )
    surgery_margin_s: float = 2 * DAY_S  # post-processing, sterilization and delivery before the surgery


DEFAULT_POLICY = SchedulingPolicy()


@dataclass(frozen=True)
class PrinterView:
    """A printer as the scheduler sees it: what it is and what it is doing."""

    spec: PrinterSpec
    state: PrinterState
    queue_paused: bool = False  # an operator or a printer error paused this printer's queue
    bed_clear: bool = True  # an operator confirmed the plate is empty since the last print

    @property
    def free(self) -> bool:
        return self.state is PrinterState.IDLE and self.bed_clear and not self.queue_paused


@dataclass(frozen=True)
class QueuedJob:
    id: str
    requirements: JobRequirements
    created_at_s: float
    priority: Priority = Priority.ROUTINE
    surgery_at_s: float | None = None
    assigned_printer_id: str | None = None  # an operator's manual assignment
    manual_rank: int | None = None  # an operator's manual order: lower first, ahead of all unranked jobs


@dataclass(frozen=True)
class Start:
    job_id: str
    printer_id: str
    box_index: int  # which of the job's candidate orientations (requirements.boxes_mm) fits the printer
    turn_deg: float  # its turn about Z on the plate


@dataclass(frozen=True)
class Refusal:
    job_id: str
    reason: str
    printer_reasons: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Wait:
    job_id: str
    reason: str


@dataclass(frozen=True)
class Decision:
    starts: tuple[Start, ...]
    refusals: tuple[Refusal, ...]
    waiting: tuple[Wait, ...]  # in queue order


def need_by_s(job: QueuedJob, policy: SchedulingPolicy = DEFAULT_POLICY) -> float:
    if job.surgery_at_s is not None:
        return job.surgery_at_s - policy.surgery_margin_s
    return job.created_at_s + policy.lead_time_s[job.priority]


def queue_key(job: QueuedJob, policy: SchedulingPolicy = DEFAULT_POLICY) -> tuple[int, float, int, float, float, str]:
    """The sort key of the queue order (smaller first)."""
    if job.manual_rank is not None:
        return (0, float(job.manual_rank), 0, 0.0, 0.0, job.id)
    day = float(math.floor(need_by_s(job, policy) / DAY_S))
    return (1, day, 0 if job.surgery_at_s is not None else 1, -float(job.priority), job.created_at_s, job.id)


def queue_order(jobs: Sequence[QueuedJob], policy: SchedulingPolicy = DEFAULT_POLICY) -> list[QueuedJob]:
    return sorted(jobs, key=lambda j: queue_key(j, policy))


def schedule(
    printers: Sequence[PrinterView],
    jobs: Sequence[QueuedJob],
    *,
    policy: SchedulingPolicy = DEFAULT_POLICY,
) -> Decision:
    """No clock needed: need-by times are absolute, so the same queue gives the same decision."""
    fleet = {p.spec.id: p for p in sorted(printers, key=lambda p: p.spec.id)}
    taken: set[str] = set()
    starts: list[Start] = []
    refusals: list[Refusal] = []
    waits: dict[str, str] = {}
    queue: list[tuple[QueuedJob, dict[str, Capability]]] = []

    for job in queue_order(jobs, policy):
        refusal, capabilities = _refusal(job, fleet)
        if refusal is not None:
            refusals.append(refusal)
        else:
            queue.append((job, capabilities))

    # assigned jobs first on their printer, then everyone else in queue order
    for job, capabilities in queue:
        if job.assigned_printer_id is None:
            continue
        printer, capability = fleet[job.assigned_printer_id], capabilities[job.assigned_printer_id]
        if printer.free and capability.ready and printer.spec.id not in taken:
            starts.append(_start(job, capability))
            taken.add(printer.spec.id)
        else:
            waits[job.id] = _why_waiting([printer], capabilities, taken, assigned=True)
    for job, capabilities in queue:
        if job.assigned_printer_id is not None:
            continue
        ready = [
            fleet[pid]
            for pid, capability in capabilities.items()
            if capability.ready and fleet[pid].free and pid not in taken
        ]
        if ready:
            chosen = min(ready, key=lambda p: (_volume_mm3(p.spec), p.spec.id))
            starts.append(_start(job, capabilities[chosen.spec.id]))
            taken.add(chosen.spec.id)
        else:
            capable = [fleet[pid] for pid, c in capabilities.items() if c.capable]
            waits[job.id] = _why_waiting(capable, capabilities, taken, assigned=False)

    started = {s.job_id for s in starts}
    waiting = tuple(Wait(job.id, waits[job.id]) for job, _ in queue if job.id not in started)
    return Decision(tuple(starts), tuple(refusals), waiting)


def _refusal(job: QueuedJob, fleet: Mapping[str, PrinterView]) -> tuple[Refusal | None, dict[str, Capability]]:
    if problems := request_problems(job.requirements):
        return Refusal(job.id, "; ".join(problems)), {}
    capabilities = {pid: assess(p.spec, job.requirements) for pid, p in fleet.items()}
    if job.assigned_printer_id is not None:
        if job.assigned_printer_id not in fleet:
            return Refusal(job.id, f"assigned to printer {job.assigned_printer_id}, which is not in the fleet"), {}
        assigned = capabilities[job.assigned_printer_id]
        if not assigned.capable:
            why = "; ".join(assigned.problems)
            reason = f"assigned to printer {job.assigned_printer_id}, which cannot take it: {why}"
            return Refusal(job.id, reason, {assigned.printer_id: assigned.problems}), {}
    capable = {pid: c for pid, c in capabilities.items() if c.capable}
    if not capable:
        reasons = {pid: c.problems for pid, c in capabilities.items()}
        summary = "no printer in the fleet can print it" if fleet else "the fleet has no printers"
        return Refusal(job.id, summary, reasons), {}
    return None, capable


def _start(job: QueuedJob, capability: Capability) -> Start:
    assert capability.fit is not None  # a capable printer has a fitting orientation
    box_index, turn_deg = capability.fit
    return Start(job.id, capability.printer_id, box_index, turn_deg)


def _why_waiting(
    candidates: Sequence[PrinterView], capabilities: Mapping[str, Capability], taken: set[str], *, assigned: bool
) -> str:
    """The most useful single sentence: busy printers, or the setup that would let one take it."""
    ready = [p for p in candidates if capabilities[p.spec.id].ready]
    if ready:
        busy = ", ".join(f"{p.spec.id} ({_state(p, taken)})" for p in ready)
        return f"{'assigned printer' if assigned else 'waiting for'} {busy}"
    setups = "; ".join(f"{p.spec.id}: {', '.join(capabilities[p.spec.id].setup)}" for p in candidates)
    return f"needs an operator: {setups}"


def _state(printer: PrinterView, taken: set[str]) -> str:
    if printer.spec.id in taken:
        return "taken by a job ahead in the queue"
    if printer.queue_paused:
        return "queue paused"
    if printer.state is PrinterState.IDLE and not printer.bed_clear:
        return PrinterState.BED_NOT_CLEARED.value
    return str(printer.state.value)


def _volume_mm3(spec: PrinterSpec) -> float:
    volume = spec.build_volume
    return volume.x_mm * volume.y_mm * volume.z_mm
