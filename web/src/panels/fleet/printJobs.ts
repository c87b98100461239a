/**
 * The site's print jobs in the maker room: the open ones from GET /api/sites/{site}/fleet, kept current by
 * the room's `print_job` frames (docs/protocol.md §6), plus the last few that ended while the room was open.
 * Every job says what it is for: a fit-check copy (`purpose: fit_check`, a polymer copy of a guide or
 * implant to try on the bone model) is marked as such wherever a job is shown, here and on its printer.
 */
import { clear, h } from "../../dom";

export type PrintJob = Record<string, unknown> & { id: string; name: string; state: string; purpose: string };

const FINISHED = new Set(["done", "failed", "cancelled", "refused"]);
const FINISHED_SHOWN = 10;

export function text(value: unknown): string {
  return value === null || value === undefined ? "" : String(value);
}

export function isFitCheck(job: { purpose?: unknown } | undefined): boolean {
  return job?.purpose === "fit_check";
}

/** "fit check" for a fit-check copy; nothing for the clinical part itself. */
export function purposeBadge(job: { purpose?: unknown } | undefined): HTMLElement | null {
  if (!isFitCheck(job)) return null;
  return h(
    "span",
    { class: "badge purpose-fit-check", testid: "print-job-purpose", title: "A polymer copy to check the fit on the bone model, not the part for surgery" },
    "fit check",
  );
}

export class PrintJobList {
  readonly el: HTMLElement;
  private readonly list = h("ul", { class: "print-jobs", testid: "print-jobs" });
  private jobs = new Map<string, PrintJob>();
  private order = new Map<string, number>(); // id -> when first seen, for newest-first lists
  private counter = 0;

  constructor(private readonly printerName: (id: string) => string) {
    this.el = h("section", { class: "fleet-section" }, h("h3", {}, "Print jobs"), this.list);
    this.render();
  }

  get(id: unknown): PrintJob | undefined {
    return typeof id === "string" ? this.jobs.get(id) : undefined;
  }

  /** The open jobs of a fresh snapshot: those it lacks have ended meanwhile (or are not ours to know). */
  setOpen(open: PrintJob[]): void {
    const keep = new Map([...this.jobs].filter(([, job]) => FINISHED.has(job.state)));
    this.jobs = keep;
    const byAge = [...open].sort((a, b) => Number(a.created_at_ms ?? 0) - Number(b.created_at_ms ?? 0));
    for (const job of byAge) this.put(job);
    this.render();
  }

  /** A `print_job` frame; true when the job is new or changed state (what the quota depends on). */
  onFrame(frame: Record<string, unknown>): boolean {
    const { type: _type, ...fields } = frame;
    const id = text(fields.id);
    if (!id) return false;
    const known = this.jobs.get(id);
    this.put({ ...(known ?? {}), ...fields, id, name: text(fields.name ?? known?.name), state: text(fields.state), purpose: text(fields.purpose ?? known?.purpose ?? "clinical") });
    this.render();
    return known?.state !== text(fields.state);
  }

  render(): void {
    clear(this.list);
    const all = [...this.jobs.values()].sort((a, b) => (this.order.get(b.id) ?? 0) - (this.order.get(a.id) ?? 0));
    const open = all.filter((j) => !FINISHED.has(j.state));
    const ended = all.filter((j) => FINISHED.has(j.state)).slice(0, FINISHED_SHOWN);
    if (!open.length && !ended.length) this.list.append(h("li", { class: "empty", testid: "print-jobs-empty" }, "No print jobs."));
    for (const job of [...open, ...ended]) this.list.append(this.item(job));
  }

  private put(job: PrintJob): void {
    if (!this.order.has(job.id)) this.order.set(job.id, ++this.counter);
    this.jobs.set(job.id, job);
  }

  private item(job: PrintJob): HTMLElement {
    const progress = typeof job.progress === "number" && job.state === "printing" ? `${Math.round(job.progress * 100)}%` : "";
    const layer = job.layer != null && job.layers != null && job.state === "printing" ? `layer ${text(job.layer)}/${text(job.layers)}` : "";
    const printer = text(job.printer_id);
    const why = text(job.reason) || text(job.wait_reason);
    return h(
      "li",
      { class: `print-job state-${job.state}`, testid: "print-job", "data-job": job.id, "data-state": job.state, "data-purpose": job.purpose },
      h("div", { class: "print-job-head" }, h("strong", {}, job.name || job.id), " ", purposeBadge(job)),
      h(
        "div",
        { class: "muted", testid: "print-job-state" },
        [job.state, printer ? `on ${this.printerName(printer)}` : "", progress, layer].filter(Boolean).join(" · "),
      ),
      why ? h("div", { class: "muted print-job-reason" }, why) : null,
    );
  }
}
