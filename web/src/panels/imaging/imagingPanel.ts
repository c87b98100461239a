/**
 * The Imaging tab: the room's case, uploading DICOM files or zips into it (progress of the upload, then
 * of the ingest job), retrieving a study from the PACS, a label map made in 3D Slicer as a model, the
 * ingest reports, the series with their volumes, slices and model building.
 * Loaded when the tab is first shown; refreshed whenever an imaging job of the room finishes (someone
 * else's upload too).
 */
import { api, ApiError, type Room } from "../../api";
import { h } from "../../dom";
import { imagingApi, type IngestReport, type Series } from "../../imagingApi";
import { isFinished, type JobStore } from "../../jobs";
import type { Vec3 } from "../../protocol";
import { FileUpload } from "../fileUpload";
import { jobLine } from "../jobs";
import { renderReports } from "./ingestReports";
import { LabelMapForm } from "./labelMapForm";
import { PacsForm } from "./pacsForm";
import { SeriesList } from "./seriesList";

/** Jobs after which the case may have new series, volumes or reports (someone else's upload too). */
const ADDS_IMAGES = new Set(["imaging.ingest", "imaging.pacs_pull"]);

export interface ImagingPanelDeps {
  roomId: string;
  room: Promise<Room>;
  jobs: JobStore;
  canEdit: () => boolean;
  openSlices: (caseId: string, series: Series, label: string) => void;
  cursor: () => Vec3 | null;
}

export class ImagingPanel {
  readonly el: HTMLElement;
  private caseId: string | null = null;
  private started = false;
  private loading = false;
  private uploadJobId: string | null = null;
  private readonly caseLine: HTMLElement;
  private readonly body: HTMLElement;
  private readonly uploadStatus: HTMLElement;
  private readonly seriesBox: HTMLElement;
  private readonly reportsBox: HTMLElement;
  private readonly problem: HTMLElement;
  private upload: FileUpload | null = null;
  private seriesList: SeriesList | null = null;

  constructor(private readonly deps: ImagingPanelDeps) {
    this.caseLine = h("div", { class: "case-line", testid: "imaging-case" }, "Loading…");
    this.uploadStatus = h("div", { class: "form-status", testid: "imaging-upload-status" });
    this.seriesBox = h("div", {});
    this.reportsBox = h("div", {});
    this.problem = h("div", { class: "error", role: "alert", hidden: true });
    this.body = h("div", { class: "imaging-body", hidden: true });
    this.el = h("div", { class: "panel imaging-panel", testid: "imaging-panel" }, this.caseLine, this.problem, this.body);
    deps.jobs.on("changed", (job) => {
      if (job.id === this.uploadJobId) this.renderUploadStatus();
      if (this.caseId && ADDS_IMAGES.has(job.kind) && isFinished(job)) void this.refresh();
    });
  }

  /** The tab was shown: load the first time, and again while the room has no case (one may be attached). */
  show(): void {
    if (this.loading || (this.started && this.caseId !== null)) return;
    const room = this.started ? api.room(this.deps.roomId) : this.deps.room;
    this.started = true;
    void this.start(room);
  }

  private async start(roomInfo: Promise<Room>): Promise<void> {
    this.loading = true;
    try {
      const room = await roomInfo;
      this.caseId = room.case_id;
      if (!room.case_id) {
        this.caseLine.textContent = "No case attached to this room: imaging belongs to a patient case.";
        this.caseLine.dataset.case = "";
        return;
      }
      const [info, me] = await Promise.all([imagingApi.caseLabel(room.case_id), api.me()]);
      this.caseLine.replaceChildren("Case ", h("strong", {}, info.label));
      this.caseLine.dataset.case = room.case_id;
      this.buildBody(info.site_id === me.site_id);
      await this.refresh();
    } catch (err) {
      this.showProblem(err, "Could not load the case's imaging.");
      this.started = false; // try again when the tab is shown again
    } finally {
      this.loading = false;
    }
  }

  private buildBody(ownSite: boolean): void {
    if (this.upload) return; // built by an earlier attempt
    const caseId = this.caseId!;
    this.upload = new FileUpload({
      testid: "imaging-upload",
      prompt: "DICOM files or a zip of a study",
      // No `accept` filter: DICOM files often have no extension (IM0001) and would be hidden by one.
      multiple: true,
      folders: true,
      buttonLabel: "Upload",
      upload: async (files, progress) => {
        const accepted = await imagingApi.upload(caseId, this.deps.roomId, files, progress);
        this.uploadJobId = accepted.job.id;
        this.deps.jobs.setLabel(accepted.job.id, `Upload of ${accepted.files} file${accepted.files === 1 ? "" : "s"}`);
        this.deps.jobs.upsert(accepted.job);
        this.renderUploadStatus();
      },
    });
    const allowed = ownSite && this.deps.canEdit();
    const why = ownSite ? "Observers cannot add images." : "Only the case's own site adds images to it.";
    this.upload.setAllowed(allowed, why);
    const { roomId, jobs } = this.deps;
    const pacs = new PacsForm({ caseId, roomId, jobs });
    pacs.setAllowed(allowed, why);
    const labelMap = new LabelMapForm({ caseId, roomId, jobs });
    labelMap.setAllowed(allowed, ownSite ? "Observers cannot add models." : "Only the case's own site adds label maps to it.");
    this.seriesList = new SeriesList({
      caseId,
      roomId: this.deps.roomId,
      jobs: this.deps.jobs,
      cursor: this.deps.cursor,
      canBuild: this.deps.canEdit,
      openSlices: (series, label) => this.deps.openSlices(caseId, series, label),
    });
    this.seriesBox.append(this.seriesList.el);
    this.body.append(
      h("h2", {}, "Add images"),
      this.upload.el,
      this.uploadStatus,
      // Occasional sources, folded so that the series stay near the top of the tab.
      h("details", { class: "imaging-source", testid: "pacs-section" }, h("summary", {}, "Retrieve from the PACS"), pacs.el),
      h("details", { class: "imaging-source", testid: "labelmap-section" }, h("summary", {}, "Model from a 3D Slicer label map"), labelMap.el),
      h("h2", {}, "Series"),
      this.seriesBox,
      h("h2", {}, "Ingest reports"),
      this.reportsBox,
    );
    this.body.hidden = false;
  }

  async refresh(): Promise<void> {
    const caseId = this.caseId;
    if (!caseId || !this.seriesList) return;
    try {
      const [series, reports]: [Series[], IngestReport[]] = await Promise.all([imagingApi.series(caseId), imagingApi.reports(caseId)]);
      this.seriesList.render(series);
      this.reportsBox.replaceChildren(renderReports(reports));
      this.problem.hidden = true;
    } catch (err) {
      this.showProblem(err, "Could not load the series.");
    }
  }

  private renderUploadStatus(): void {
    const job = this.uploadJobId ? this.deps.jobs.get(this.uploadJobId) : undefined;
    const result = job?.state === "succeeded" ? job.result : null;
    const summary = result
      ? h("div", { class: "muted", testid: "imaging-upload-summary" }, `${Number(result.accepted ?? 0)} accepted, ${Number(result.duplicates ?? 0)} already in the case, ${Number(result.rejected ?? 0)} rejected`)
      : null;
    this.uploadStatus.replaceChildren(h("span", { class: "muted" }, "Ingest: "), jobLine(job, "imaging-upload-job"), summary ?? "");
  }

  private showProblem(err: unknown, fallback: string): void {
    this.problem.hidden = false;
    this.problem.textContent = err instanceof ApiError ? err.message : fallback;
  }
}
