/** The room's jobs: what runs on the server for this room (uploads, model building, design), with progress. */
import { ApiError, request } from "../api";
import { clear, h, toast } from "../dom";
import { isFinished, jobStateText, type JobStore, type JobView } from "../jobs";

/** One job's state as a line: a progress bar while it runs, the error when it failed. Text only. */
export function jobLine(job: JobView | undefined, testid: string): HTMLElement {
  if (!job) return h("div", { class: "job-line", testid, "data-state": "submitting" }, "submitting…");
  const bar = job.state === "running" || job.state === "queued" ? h("progress", { class: "job-progress", max: 1, value: job.progress }) : null;
  return h(
    "div",
    { class: `job-line ${job.state}`, testid, "data-state": job.state, "data-job": job.id, role: job.state === "failed" ? "alert" : null },
    bar,
    h("span", { class: "job-state" }, jobStateText(job)),
  );
}

export class JobsPanel {
  readonly el: HTMLElement;
  private list: HTMLUListElement;

  constructor(
    private readonly jobs: JobStore,
    private readonly canCancel: (job: JobView) => boolean,
  ) {
    this.list = h("ul", { class: "jobs-list", testid: "jobs-list" });
    this.el = h("div", { class: "panel jobs-panel" }, this.list);
    jobs.on("changed", () => this.render());
    this.render();
  }

  render(): void {
    clear(this.list);
    const all = this.jobs.list();
    if (all.length === 0) {
      this.list.append(h("li", { class: "empty", testid: "jobs-empty" }, "No jobs yet. Uploads, models built from CT and design operations run here."));
      return;
    }
    for (const job of all) {
      const cancel =
        !isFinished(job) && this.canCancel(job)
          ? h("button", { class: "btn tiny", testid: "job-cancel", onclick: () => void this.cancel(job) }, "Cancel")
          : null;
      this.list.append(
        h(
          "li",
          { class: "job-item", testid: "job-item", "data-id": job.id, "data-kind": job.kind, "data-state": job.state },
          h("div", { class: "job-head" }, h("span", { class: "job-kind" }, this.jobs.labelOf(job)), cancel),
          jobLine(job, "job-state"),
        ),
      );
    }
  }

  private async cancel(job: JobView): Promise<void> {
    try {
      this.jobs.upsert(await request<JobView>("POST", `/api/jobs/${encodeURIComponent(job.id)}/cancel`));
    } catch (err) {
      toast(err instanceof ApiError ? err.message : "Could not cancel the job.", "error");
    }
  }
}
