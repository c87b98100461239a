/**
 * One printer's card on the maker dashboard: state, the job on it (marked when it is a fit-check copy),
 * progress, layer n/N, ETA, temperatures, camera; "Bed cleared"; and for technicians and admins "Retire…",
 * which asks first, then shows the server's refusal (409 `printer_in_use`, with its reasons) as it is.
 */
import { h } from "../../dom";
import { purposeBadge, text, type PrintJob } from "./printJobs";

export type Printer = Record<string, unknown> & { id: string; name: string; state: string };

export interface CardView {
  printer: Printer;
  job: PrintJob | undefined; // the print job on it, when the list knows it
  cameraUrl: string | undefined;
  canOperate: boolean; // technicians and admins (the server checks again)
  confirming: boolean; // "Retire…" was clicked: ask before retiring
  retiring: boolean; // the DELETE is under way
  retireError: string | undefined; // the server's words
}

export interface CardActions {
  bedCleared(id: string): void;
  askRetire(id: string): void;
  confirmRetire(id: string): void;
  cancelRetire(id: string): void;
}

/** The id of the print job on the printer: a `printer` frame says `job`, the fleet snapshot `current_job_id`. */
export function jobOf(p: Printer): string | null {
  const id = "job" in p ? p.job : p.current_job_id;
  return typeof id === "string" && id ? id : null;
}

function jobLine(p: Printer, job: PrintJob | undefined): HTMLElement | null {
  const id = jobOf(p);
  if (!id) return null;
  return h(
    "div",
    { class: "printer-job", testid: "printer-job", "data-job": id, "data-purpose": text(job?.purpose) },
    `Job: ${job?.name || id} `,
    purposeBadge(job),
  );
}

function actionControls(v: CardView, actions: CardActions): Array<HTMLElement | null> {
  const id = v.printer.id;
  const asking = v.canOperate && v.confirming;
  const bed =
    v.printer.state === "bed-not-cleared"
      ? h("button", { type: "button", class: "btn tiny", testid: "bed-cleared", onclick: () => actions.bedCleared(id) }, "Bed cleared")
      : null;
  const retire =
    v.canOperate && !asking
      ? h("button", { type: "button", class: "btn tiny", testid: "printer-retire", onclick: () => actions.askRetire(id) }, "Retire…")
      : null;
  const confirm = asking
    ? h(
        "div",
        { class: "retire-confirm", testid: "retire-confirmation", role: "group" },
        h("span", {}, `Retire ${v.printer.name || id}? It leaves the fleet for good; the history of its jobs keeps it.`),
        h(
          "div",
          { class: "printer-actions" },
          h("button", { type: "button", class: "btn tiny danger", testid: "retire-confirm", disabled: v.retiring, onclick: () => actions.confirmRetire(id) }, "Retire printer"),
          h("button", { type: "button", class: "btn tiny", testid: "retire-cancel", disabled: v.retiring, onclick: () => actions.cancelRetire(id) }, "Keep it"),
        ),
      )
    : null;
  const error = v.retireError
    ? h(
        "div",
        { class: "retire-error", testid: "retire-error", role: "alert" },
        h("span", { testid: "retire-error-text" }, v.retireError),
        h("button", { type: "button", class: "icon-btn", title: "Dismiss", "aria-label": "Dismiss", onclick: () => actions.cancelRetire(id) }, "×"),
      )
    : null;
  return [bed || retire ? h("div", { class: "printer-actions" }, bed, retire) : null, confirm, error];
}

export function printerCard(v: CardView, actions: CardActions): HTMLElement {
  const p = v.printer;
  const progress = typeof p.progress === "number" ? Math.round(p.progress * 100) : null;
  const layer = p.layer != null && p.layers != null ? `layer ${text(p.layer)}/${text(p.layers)}` : "";
  const eta = typeof p.eta_s === "number" ? `ETA ${Math.round(p.eta_s / 60)} min` : "";
  const temps = Array.isArray(p.temperatures)
    ? (p.temperatures as Array<Record<string, unknown>>).map((t) => `${text(t.name)} ${Math.round(Number(t.actual_c))}°C`).join(" · ")
    : "";
  return h(
    "div",
    { class: `printer-card state-${p.state}`, testid: "printer-card", "data-printer": p.id, "data-state": p.state },
    h("strong", {}, p.name || p.id),
    h("span", { class: "muted" }, ` ${text(p.technology)} · ${p.state}`),
    jobLine(p, v.job),
    progress !== null ? h("progress", { max: 100, value: progress }) : null,
    h("div", { class: "printer-line", testid: "printer-progress" }, [progress !== null ? `${progress}%` : "", layer, eta].filter(Boolean).join(" · ")),
    temps ? h("div", { class: "muted" }, temps) : null,
    p.message ? h("div", { class: "printer-message" }, text(p.message)) : null,
    ...actionControls(v, actions),
    v.cameraUrl ? h("img", { class: "printer-camera", src: v.cameraUrl, alt: `camera of ${p.name}` }) : null,
  );
}
