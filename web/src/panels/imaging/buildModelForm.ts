/**
 * "Build model" for one series with a volume: a HU preset (or a custom range), the face budget, which
 * parts to keep, a name. The job runs on the server; the model reaches everyone in the room as a
 * `scene.model.added` event when it is done.
 */
import { ApiError } from "../../api";
import { h } from "../../dom";
import { imagingApi, PRESETS, type ModelRequest, type Preset, type Series } from "../../imagingApi";
import type { JobStore } from "../../jobs";
import type { Vec3 } from "../../protocol";
import { jobLine } from "../jobs";

const PRESET_LABEL: Record<Preset, string> = {
  bone: "Bone",
  compact_bone: "Compact bone",
  spongial_bone: "Spongy bone",
  soft_tissue: "Soft tissue",
  muscle: "Muscle",
  fat: "Fat",
  custom: "Custom HU range",
};

export interface BuildModelDeps {
  caseId: string;
  roomId: string;
  jobs: JobStore;
  /** The slice viewer's cursor, for "keep the part under the cursor". */
  cursor: () => Vec3 | null;
}

export class BuildModelForm {
  readonly el: HTMLElement;
  private jobId: string | null = null;
  private readonly name: HTMLInputElement;
  private readonly preset: HTMLSelectElement;
  private readonly huMin: HTMLInputElement;
  private readonly huMax: HTMLInputElement;
  private readonly faces: HTMLInputElement;
  private readonly keep: HTMLSelectElement;
  private readonly submit: HTMLButtonElement;
  private readonly problem: HTMLElement;
  private readonly status: HTMLElement;
  private readonly huFields: HTMLElement;
  private nameEdited = false;

  constructor(
    private readonly series: Series,
    private readonly deps: BuildModelDeps,
  ) {
    this.name = h("input", { testid: "model-name", value: "Bone", maxlength: 200, required: true });
    this.name.addEventListener("input", () => (this.nameEdited = true));
    this.preset = h("select", { testid: "model-preset" }, ...PRESETS.map((p) => h("option", { value: p }, PRESET_LABEL[p])));
    this.preset.addEventListener("change", () => this.presetChanged());
    this.huMin = h("input", { type: "number", testid: "model-hu-min", value: "300", step: 10, class: "narrow" });
    this.huMax = h("input", { type: "number", testid: "model-hu-max", value: "3000", step: 10, class: "narrow" });
    this.huFields = h("div", { class: "form-row", hidden: true }, h("label", {}, "HU from ", this.huMin), h("label", {}, " to ", this.huMax));
    this.faces = h("input", { type: "number", testid: "model-faces", min: 1000, step: 1000, placeholder: "server default", class: "medium" });
    this.keep = h(
      "select",
      { testid: "model-keep" },
      h("option", { value: "largest" }, "Largest part"),
      h("option", { value: "all" }, "All parts"),
      h("option", { value: "seed" }, "Part under the slice cursor"),
    );
    this.submit = h("button", { class: "btn small primary", testid: "model-build", type: "submit" }, "Build model");
    this.problem = h("div", { class: "error", testid: "model-error", role: "alert", hidden: true });
    this.status = h("div", { class: "form-status" });
    this.el = h(
      "form",
      { class: "build-form", testid: "build-model-form", onsubmit: (e: Event) => (e.preventDefault(), void this.send()) },
      h("label", { class: "form-field" }, "Name", this.name),
      h("label", { class: "form-field" }, "Tissue", this.preset),
      this.huFields,
      h("label", { class: "form-field" }, "Target faces", this.faces),
      h("label", { class: "form-field" }, "Keep", this.keep),
      h("div", { class: "form-actions" }, this.submit),
      this.problem,
      this.status,
    );
    deps.jobs.on("changed", (job) => job.id === this.jobId && this.renderStatus());
  }

  private presetChanged(): void {
    const preset = this.preset.value as Preset;
    this.huFields.hidden = preset !== "custom";
    if (!this.nameEdited && preset !== "custom") this.name.value = PRESET_LABEL[preset];
  }

  private request(): ModelRequest | string {
    const name = this.name.value.trim();
    if (!name) return "Give the model a name.";
    const body: ModelRequest = { name, preset: this.preset.value as Preset, keep: this.keep.value as ModelRequest["keep"], room_id: this.deps.roomId };
    if (body.preset === "custom") {
      const [low, high] = [Number(this.huMin.value), Number(this.huMax.value)];
      if (!Number.isFinite(low) || !Number.isFinite(high) || low >= high) return "The HU range needs a lower bound below the upper bound.";
      body.hu_min = low;
      body.hu_max = high;
    }
    if (this.faces.value) body.target_faces = Number(this.faces.value);
    if (body.keep === "seed") {
      const cursor = this.deps.cursor();
      if (!cursor) return "Open the slices and place the cursor on the part to keep.";
      body.seed_lps = cursor;
    }
    return body;
  }

  private async send(): Promise<void> {
    const body = this.request();
    this.problem.hidden = typeof body !== "string";
    if (typeof body === "string") {
      this.problem.textContent = body;
      return;
    }
    this.submit.disabled = true;
    this.jobId = null;
    this.renderStatus();
    try {
      const job = await imagingApi.buildModel(this.deps.caseId, this.series.id, body);
      this.jobId = job.id;
      this.deps.jobs.setLabel(job.id, `Model “${body.name}”`);
      this.deps.jobs.upsert(job);
      this.renderStatus();
    } catch (err) {
      this.status.replaceChildren();
      this.problem.hidden = false;
      this.problem.textContent = err instanceof ApiError ? err.message : "Could not start building the model.";
    } finally {
      this.submit.disabled = false;
    }
  }

  private renderStatus(): void {
    const job = this.jobId ? this.deps.jobs.get(this.jobId) : undefined;
    this.status.replaceChildren(jobLine(job, "model-job"));
    if (job?.state === "succeeded") this.status.append(h("div", { class: "muted" }, "The model is in the scene for everyone in the room."));
  }
}
