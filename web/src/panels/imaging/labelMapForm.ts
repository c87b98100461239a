/**
 * A label map segmented elsewhere (3D Slicer's "Export to label map file": NRRD, .seg.nrrd, NIfTI) into a
 * model of the room, instead of thresholding a series here: one file, the label value to model (empty:
 * every nonzero voxel), a name and the face budget. The server refuses what it cannot take at once (the
 * 4xx message is shown); the `imaging.labelmap_model` job then builds the surface in the file's own
 * patient coordinates, so a label map exported from this case's CT lines up with its series and models.
 */
import type { UploadProgress } from "../../api";
import { h } from "../../dom";
import { imagingApi, type LabelMapOptions } from "../../imagingApi";
import type { JobStore } from "../../jobs";
import { FileUpload } from "../fileUpload";
import { jobLine } from "../jobs";

export interface LabelMapDeps {
  caseId: string;
  roomId: string;
  jobs: JobStore;
}

export class LabelMapForm {
  readonly el: HTMLElement;
  private jobId: string | null = null;
  private readonly name: HTMLInputElement;
  private readonly label: HTMLInputElement;
  private readonly faces: HTMLInputElement;
  private readonly upload: FileUpload;
  private readonly status: HTMLElement;

  constructor(private readonly deps: LabelMapDeps) {
    this.name = h("input", { testid: "labelmap-name", value: "Segmentation", maxlength: 200, required: true });
    this.label = h("input", { type: "number", testid: "labelmap-label", min: 0, step: 1, placeholder: "every nonzero label", class: "medium" });
    this.faces = h("input", { type: "number", testid: "labelmap-faces", min: 1000, step: 1000, placeholder: "server default", class: "medium" });
    this.status = h("div", { class: "form-status", testid: "labelmap-status" });
    this.upload = new FileUpload({
      testid: "labelmap-upload",
      prompt: "One label map: NRRD (.nrrd, .seg.nrrd) or NIfTI (.nii, .nii.gz)",
      accept: ".nrrd,.nii,.gz",
      multiple: false,
      buttonLabel: "Upload label map",
      validate: () => {
        const options = this.options();
        return typeof options === "string" ? options : null;
      },
      upload: (files, progress) => this.send(files[0], progress),
    });
    this.el = h(
      "div",
      { class: "labelmap-form", testid: "labelmap-form" },
      h("label", { class: "form-field" }, "Name", this.name),
      h("div", { class: "form-row" }, h("label", { class: "form-field" }, "Label value", this.label), h("label", { class: "form-field" }, "Target faces", this.faces)),
      this.upload.el,
      this.status,
    );
    deps.jobs.on("changed", (job) => job.id === this.jobId && this.renderStatus());
  }

  setAllowed(allowed: boolean, why: string): void {
    this.upload.setAllowed(allowed, why);
  }

  /** The form's values, or what is wrong with them. */
  private options(): LabelMapOptions | string {
    const name = this.name.value.trim();
    if (!name) return "Give the model a name.";
    const label = this.label.value.trim() === "" ? null : Number(this.label.value);
    if (label !== null && !(Number.isInteger(label) && label >= 0)) return "The label value is a whole number, 0 or more (empty: every nonzero label).";
    const faces = this.faces.value.trim() === "" ? null : Number(this.faces.value);
    if (faces !== null && !(Number.isInteger(faces) && faces >= 1000)) return "Target faces is a whole number of at least 1000.";
    return { name, label, targetFaces: faces };
  }

  private async send(file: File, progress: UploadProgress): Promise<void> {
    const options = this.options();
    if (typeof options === "string") throw new Error(options); // validate() ran just before: not reached
    this.jobId = null;
    this.status.replaceChildren();
    const job = await imagingApi.uploadLabelMap(this.deps.caseId, this.deps.roomId, file, options, progress);
    this.jobId = job.id;
    this.deps.jobs.setLabel(job.id, `Model “${options.name}” from a label map`);
    this.deps.jobs.upsert(job);
    this.renderStatus();
  }

  private renderStatus(): void {
    const job = this.jobId ? this.deps.jobs.get(this.jobId) : undefined;
    this.status.replaceChildren(jobLine(job, "labelmap-job"));
    if (job?.state === "succeeded") this.status.append(h("div", { class: "muted" }, "The model is in the scene for everyone in the room."));
  }
}
