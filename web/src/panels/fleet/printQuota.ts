/**
 * The site's print quota in the maker room (GET /api/sites/{site}/print-quota): open jobs and this
 * month's part volume, each as used / limit with whose limit it is (the site's own or the default).
 * Refreshed when print jobs change. Admins get a form to set the site's own limits (PATCH; an empty
 * field sends null: back to the default); the server decides who may, and its refusal is shown as it is.
 */
import { ApiError, request } from "../../api";
import { clear, h } from "../../dom";

interface Limit {
  limit: number;
  used: number;
  source: "site" | "default";
}

export interface Quota {
  site_id: string;
  month: string;
  timezone: string;
  active_jobs: Limit;
  monthly_volume_cm3: Limit;
}

function number(x: number): string {
  return String(Math.round(x * 10) / 10);
}

function row(testid: string, label: string, q: Limit, unit: string): HTMLElement {
  return h(
    "div",
    { class: "quota-row", testid, "data-used": q.used, "data-limit": q.limit, "data-source": q.source },
    h("span", { class: "quota-label" }, label),
    h("meter", { min: 0, max: Math.max(q.limit, 1e-9), value: Math.min(q.used, q.limit) }),
    h("span", { class: "quota-numbers" }, `${number(q.used)} / ${number(q.limit)}${unit}`),
    h("span", { class: "badge", testid: "quota-source", title: q.source === "site" ? "the site's own limit" : "the server's default" }, q.source),
  );
}

export class QuotaView {
  readonly el: HTMLElement;
  private readonly numbers = h("div", { class: "quota-numbers-box" });
  private readonly editButton = h("button", { type: "button", class: "btn tiny", testid: "quota-edit", hidden: true }, "Edit limits");
  private readonly active = h("input", { type: "number", step: 1, testid: "quota-active-input", placeholder: "default" });
  private readonly volume = h("input", { type: "number", step: "any", testid: "quota-volume-input", placeholder: "default" });
  private readonly error = h("div", { class: "form-error", testid: "quota-error", role: "alert", hidden: true });
  private readonly form: HTMLElement;
  private quota: Quota | null = null;
  private loading = false;
  private again = false;

  constructor(private readonly siteId: string) {
    this.form = h(
      "div",
      { class: "quota-form", testid: "quota-form", hidden: true },
      h("label", {}, "Open jobs at once ", this.active),
      h("label", {}, "Volume per month (cm³) ", this.volume),
      h("p", { class: "muted" }, "Empty: the default."),
      this.error,
      h(
        "div",
        { class: "quota-actions" },
        h("button", { type: "button", class: "btn tiny primary", testid: "quota-save", onclick: () => void this.save() }, "Save"),
        h("button", { type: "button", class: "btn tiny", testid: "quota-cancel", onclick: () => (this.form.hidden = true) }, "Cancel"),
      ),
    );
    this.editButton.addEventListener("click", () => this.openForm());
    this.el = h("section", { class: "fleet-section print-quota", testid: "print-quota" }, h("h3", {}, "Print quota ", this.editButton), this.numbers, this.form);
  }

  /** Admins get the form; the server still decides (the alliance's coordinating site may be the one). */
  set canEdit(on: boolean) {
    this.editButton.hidden = !on;
  }

  /** Fetch now, or once more after the fetch under way: bursts of job changes cost two requests at most. */
  refresh(): void {
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    void this.fetch().finally(() => {
      this.loading = false;
      if (this.again) {
        this.again = false;
        this.refresh();
      }
    });
  }

  private async fetch(): Promise<void> {
    try {
      this.show(await request<Quota>("GET", `/api/sites/${encodeURIComponent(this.siteId)}/print-quota`));
    } catch (err) {
      if (!this.quota) {
        clear(this.numbers);
        this.numbers.append(h("p", { class: "muted" }, `Print quota unavailable: ${(err as Error).message}`));
      }
    }
  }

  private show(quota: Quota): void {
    this.quota = quota;
    clear(this.numbers);
    this.numbers.append(
      row("quota-active", "Open jobs", quota.active_jobs, ""),
      row("quota-volume", `Volume in ${quota.month}`, quota.monthly_volume_cm3, " cm³"),
    );
  }

  private openForm(): void {
    const q = this.quota;
    // Only the site's own limits are filled in: saving an untouched empty field keeps the default.
    this.active.value = q?.active_jobs.source === "site" ? String(q.active_jobs.limit) : "";
    this.volume.value = q?.monthly_volume_cm3.source === "site" ? String(q.monthly_volume_cm3.limit) : "";
    if (q) {
      this.active.placeholder = `default ${number(q.active_jobs.limit)}`;
      this.volume.placeholder = `default ${number(q.monthly_volume_cm3.limit)}`;
    }
    this.error.hidden = true;
    this.form.hidden = false;
  }

  private async save(): Promise<void> {
    const value = (input: HTMLInputElement) => (input.value.trim() === "" ? null : Number(input.value));
    const body = { active_jobs: value(this.active), monthly_volume_cm3: value(this.volume) };
    this.error.hidden = true;
    try {
      this.show(await request<Quota>("PATCH", `/api/sites/${encodeURIComponent(this.siteId)}/print-quota`, body));
      this.form.hidden = true;
    } catch (err) {
      this.error.textContent = err instanceof ApiError ? err.message : "Could not save the print quota.";
      this.error.hidden = false;
    }
  }
}
