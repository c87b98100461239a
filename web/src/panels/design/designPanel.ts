/**
 * The Design tab: the scene's models with the version everyone sees, mesh operations run on the server
 * (cut, wedge, mirror, guide, repair, decimate, smooth, boolean…) and uploading a mesh into the case.
 * Results come back through the room for everyone: new versions of a model or new models.
 */
import { ApiError, type Room } from "../../api";
import { h } from "../../dom";
import { designApi, type OperationInfo } from "../../designApi";
import { isFinished, type JobStore, type JobView } from "../../jobs";
import type { Annotation, AnnotationKind } from "../../protocol";
import type { RoomContext } from "../context";
import { FileUpload } from "../fileUpload";
import { jobLine } from "../jobs";
import { versionSelect } from "../modelVersion";
import type { FormSources } from "./formFields";
import { buildOperationForm, OPERATION_LABEL, PREFERRED_ORDER, type OperationForm } from "./operationForms";

export interface DesignPanelDeps {
  ctx: RoomContext;
  roomId: string;
  room: Promise<Room>;
  jobs: JobStore;
}

export class DesignPanel {
  readonly el: HTMLElement;
  private operations: OperationInfo[] = [];
  private forms = new Map<string, OperationForm>(); // built once per operation, so choices survive switching
  private current: OperationInfo | null = null;
  private jobId: string | null = null;
  private started = false;
  private readonly models: HTMLElement;
  private readonly opSelect: HTMLSelectElement;
  private readonly summary: HTMLElement;
  private readonly formBox: HTMLElement;
  private readonly run: HTMLButtonElement;
  private readonly problem: HTMLElement;
  private readonly status: HTMLElement;
  private readonly upload: FileUpload;
  private readonly uploadStatus: HTMLElement;
  private readonly sources: FormSources;

  constructor(private readonly deps: DesignPanelDeps) {
    const { state } = deps.ctx;
    this.sources = {
      models: () => [...state.models.values()],
      annotations: (kind: AnnotationKind) => [...state.annotations.values()].filter((a: Annotation) => a.kind === kind).reverse(),
    };
    this.models = h("div", { class: "design-models", testid: "design-models" });
    this.opSelect = h("select", { testid: "design-op" });
    this.opSelect.addEventListener("change", () => this.choose(this.opSelect.value));
    this.summary = h("p", { class: "muted op-summary" });
    this.formBox = h("div", {});
    this.run = h("button", { class: "btn primary small", testid: "design-run", onclick: () => void this.send() }, "Run");
    this.problem = h("div", { class: "error", testid: "design-error", role: "alert", hidden: true });
    this.status = h("div", { class: "form-status", testid: "design-status" });
    this.upload = new FileUpload({
      testid: "mesh-upload",
      prompt: "One STL, OBJ, PLY, GLB or 3MF file",
      accept: ".stl,.obj,.ply,.glb,.3mf",
      multiple: false,
      buttonLabel: "Upload mesh",
      upload: (files, progress) => this.uploadMesh(files[0], progress),
    });
    this.uploadStatus = h("div", { class: "form-status" });
    this.el = h(
      "div",
      { class: "panel design-panel", testid: "design-panel" },
      h("h2", {}, "Models"),
      this.models,
      h("h2", {}, "Operation"),
      h("label", { class: "form-field" }, "Run", this.opSelect),
      this.summary,
      this.formBox,
      h("div", { class: "form-actions" }, this.run),
      this.problem,
      this.status,
      h("h2", {}, "Upload a mesh"),
      this.upload.el,
      this.uploadStatus,
    );
    deps.jobs.on("changed", (job) => job.id === this.jobId && this.renderStatus());
  }

  /** The tab was shown: fetch the operations the first time. */
  show(): void {
    this.render();
    if (this.started) return;
    this.started = true;
    void this.start();
  }

  /** Models or annotations changed (or the role): refresh lists and choices in place. */
  render(): void {
    const { ctx } = this.deps;
    const models = [...ctx.state.models.values()];
    this.models.replaceChildren(
      ...(models.length
        ? models.map((m) =>
            h(
              "div",
              { class: "design-model", testid: "design-model", "data-id": m.id },
              h("span", { class: "design-model-name" }, m.name),
              m.url ? versionSelect(ctx, m) : h("span", { class: "muted" }, "no geometry yet"),
            ),
          )
        : [h("p", { class: "empty" }, "No models yet: build one from a CT series (Imaging tab) or upload a mesh below.")]),
    );
    for (const form of this.forms.values()) form.refresh();
    if (this.jobId) this.renderStatus(); // the results' names arrive with the models, after the job's end
    this.run.disabled = !ctx.state.canEdit || !this.current;
    this.run.title = ctx.state.canEdit ? "" : "Observers cannot run design operations";
  }

  private async start(): Promise<void> {
    try {
      const [operations, room] = await Promise.all([designApi.operations(), this.deps.room]);
      const rank = (name: string) => (PREFERRED_ORDER.includes(name) ? PREFERRED_ORDER.indexOf(name) : PREFERRED_ORDER.length);
      this.operations = [...operations].sort((a, b) => rank(a.name) - rank(b.name));
      this.opSelect.replaceChildren(...this.operations.map((op) => h("option", { value: op.name }, OPERATION_LABEL[op.name] ?? op.name)));
      if (this.operations.length) this.choose(this.operations[0].name);
      this.upload.setAllowed(!!room.case_id && this.deps.ctx.state.canEdit, room.case_id ? "Observers cannot add meshes." : "No case attached to this room.");
    } catch (err) {
      this.showProblem(err instanceof ApiError ? err.message : "Could not load the design operations.");
    }
  }

  private choose(name: string): void {
    const op = this.operations.find((o) => o.name === name);
    if (!op) return;
    this.current = op;
    this.opSelect.value = name;
    let form = this.forms.get(name);
    if (!form) {
      form = buildOperationForm(op, this.sources);
      this.forms.set(name, form);
    }
    form.refresh();
    this.summary.textContent = op.summary;
    this.formBox.replaceChildren(form.el);
    this.problem.hidden = true;
    this.render();
  }

  private async send(): Promise<void> {
    const op = this.current;
    const form = op ? this.forms.get(op.name) : undefined;
    if (!op || !form) return;
    const request = form.request();
    if (typeof request === "string") return this.showProblem(request);
    this.problem.hidden = true;
    this.run.disabled = true;
    this.jobId = null; // the previous run's outcome goes away: this one is being submitted
    this.renderStatus();
    try {
      const job = await designApi.run(this.deps.roomId, op.name, request);
      this.jobId = job.id;
      this.deps.jobs.setLabel(job.id, OPERATION_LABEL[op.name] ?? op.name);
      this.deps.jobs.upsert(job);
      this.renderStatus();
    } catch (err) {
      this.status.replaceChildren();
      this.showProblem(err instanceof ApiError ? err.message : "Could not start the operation.");
    } finally {
      this.run.disabled = !this.deps.ctx.state.canEdit;
    }
  }

  private async uploadMesh(file: File, progress: (sent: number, total: number) => void): Promise<void> {
    const room = await this.deps.room;
    if (!room.case_id) throw new ApiError(400, "no_case", "No case attached to this room.");
    const mesh = await designApi.uploadMesh(room.case_id, this.deps.roomId, file, progress);
    this.uploadStatus.replaceChildren(h("div", { class: "muted", testid: "mesh-upload-done" }, `Added “${mesh.name}” to the scene.`));
  }

  private renderStatus(): void {
    const job = this.jobId ? this.deps.jobs.get(this.jobId) : undefined;
    this.status.replaceChildren(jobLine(job, "design-job"));
    const nameOf = (lineage: string) => this.deps.ctx.state.models.get(lineage)?.name ?? lineage;
    if (job && isFinished(job) && job.state === "succeeded") this.status.append(resultSummary(job, nameOf));
  }

  private showProblem(message: string): void {
    this.problem.hidden = false;
    this.problem.textContent = message;
  }
}

const OUTPUT_LABEL: Record<string, string> = {
  positive: "Resected part",
  negative: "Remaining part",
  wedge: "Wedge",
  remaining: "Remaining part",
  mirrored: "Mirrored copy",
  guide: "Guide",
  result: "Result",
};

/** What a finished operation produced (which model, which version), or an analysis report, as text. */
function resultSummary(job: JobView, nameOf: (lineage: string) => string): HTMLElement {
  const result = job.result ?? {};
  const outputs = (result.outputs ?? {}) as Record<string, { lineage_id?: string; version?: number }>;
  const report = (result.report ?? {}) as Record<string, unknown>;
  const lines = Object.entries(outputs).map(
    ([role, out]) => `${OUTPUT_LABEL[role] ?? "New version"}: ${out.lineage_id ? nameOf(out.lineage_id) : "model"} v${out.version ?? 1}`,
  );
  if (lines.length === 0) {
    for (const [key, value] of Object.entries(report)) {
      if (value === null || typeof value !== "object") lines.push(`${key}: ${typeof value === "number" ? +value.toFixed(3) : String(value)}`);
    }
  }
  return h("ul", { class: "result-lines", testid: "design-result" }, ...lines.map((l) => h("li", {}, l)));
}
