/**
 * Retrieving a study from the hospital PACS into the case (owning site only): search the PACS over
 * DICOMweb (by default for the case's own patient; or by patient ID, accession number, study date,
 * modality), then "Retrieve" one study: an `imaging.pacs_pull` job fetches it and ingests it like an
 * upload, with its progress here and in the jobs panel. The server's refusals (no PACS configured, the
 * PACS unreachable, a field it rejects) are shown as they come. The search answer carries the patient's
 * identity: it is shown to the owning site's user who asked, never stored or sent to the room.
 */
import { ApiError } from "../../api";
import { h } from "../../dom";
import { imagingApi, type PacsQuery, type PacsStudy } from "../../imagingApi";
import type { JobStore } from "../../jobs";
import { jobLine } from "../jobs";

export interface PacsDeps {
  caseId: string;
  roomId: string;
  jobs: JobStore;
}

const DATE = /^(\d{8})?(-(\d{8})?)?$/;

export class PacsForm {
  readonly el: HTMLElement;
  private jobId: string | null = null;
  private allowed = true;
  private readonly patientId: HTMLInputElement;
  private readonly accession: HTMLInputElement;
  private readonly studyDate: HTMLInputElement;
  private readonly modalities: HTMLInputElement;
  private readonly search: HTMLButtonElement;
  private readonly problem: HTMLElement;
  private readonly results: HTMLElement;
  private readonly status: HTMLElement;

  constructor(private readonly deps: PacsDeps) {
    this.patientId = h("input", { testid: "pacs-patient-id", maxlength: 64, placeholder: "the case's patient" });
    this.accession = h("input", { testid: "pacs-accession", maxlength: 64 });
    this.studyDate = h("input", { testid: "pacs-date", maxlength: 17, placeholder: "YYYYMMDD or a range" });
    this.modalities = h("input", { testid: "pacs-modalities", maxlength: 16, placeholder: "CT" });
    this.search = h("button", { class: "btn small", testid: "pacs-search", type: "submit" }, "Search the PACS");
    this.problem = h("div", { class: "error", testid: "pacs-error", role: "alert", hidden: true });
    this.results = h("div", { class: "pacs-results", testid: "pacs-results" });
    this.status = h("div", { class: "form-status", testid: "pacs-status" });
    this.el = h(
      "form",
      { class: "pacs-form", testid: "pacs-form", onsubmit: (e: Event) => (e.preventDefault(), void this.find()) },
      h("label", { class: "form-field" }, "Patient ID", this.patientId),
      h("div", { class: "form-row" }, h("label", { class: "form-field" }, "Accession number", this.accession), h("label", { class: "form-field" }, "Modality", this.modalities)),
      h("label", { class: "form-field" }, "Study date", this.studyDate),
      h("div", { class: "form-actions" }, this.search),
      this.problem,
      this.results,
      this.status,
    );
    deps.jobs.on("changed", (job) => job.id === this.jobId && this.renderStatus());
  }

  /** Observers and other sites may not pull into the case: the form stays visible but says why it is off. */
  setAllowed(allowed: boolean, why: string): void {
    this.allowed = allowed;
    this.search.disabled = !allowed;
    this.el.title = allowed ? "" : why;
    for (const button of this.results.querySelectorAll<HTMLButtonElement>("[data-testid=pacs-retrieve]")) button.disabled = !allowed;
  }

  private query(): PacsQuery | string {
    const query: PacsQuery = {};
    const patient = this.patientId.value.trim();
    const accession = this.accession.value.trim();
    const date = this.studyDate.value.trim();
    const modalities = this.modalities.value.trim().toUpperCase();
    if (date && !DATE.test(date)) return "The study date is YYYYMMDD, or a range YYYYMMDD-YYYYMMDD (either end may be left open).";
    if (patient) query.patient_id = patient;
    if (accession) query.accession_number = accession;
    if (date) query.study_date = date;
    if (modalities) query.modalities = modalities;
    return query;
  }

  private async find(): Promise<void> {
    const query = this.query();
    this.showProblem(typeof query === "string" ? query : null);
    if (typeof query === "string" || !this.allowed) return;
    this.search.disabled = true;
    this.results.replaceChildren(h("p", { class: "muted" }, "Searching…"));
    try {
      this.renderResults(await imagingApi.pacsQuery(this.deps.caseId, query));
    } catch (err) {
      this.results.replaceChildren();
      this.showProblem(err instanceof ApiError ? err.message : "The PACS search failed.");
    } finally {
      this.search.disabled = !this.allowed;
    }
  }

  private renderResults(studies: PacsStudy[]): void {
    if (studies.length === 0) {
      this.results.replaceChildren(h("p", { class: "empty", testid: "pacs-none" }, "The PACS has no study matching this search."));
      return;
    }
    this.results.replaceChildren(...studies.map((s) => this.studyItem(s)));
  }

  private studyItem(study: PacsStudy): HTMLElement {
    const uid = text(study.StudyInstanceUID);
    const instances = text(study.NumberOfStudyRelatedInstances);
    const facts = [formatDate(text(study.StudyDate)), text(study.ModalitiesInStudy), instances ? `${instances} images` : "", text(study.AccessionNumber) ? `accession ${text(study.AccessionNumber)}` : ""];
    const retrieve = h("button", { class: "btn small primary", testid: "pacs-retrieve", type: "button", disabled: !this.allowed || !uid, onclick: () => void this.pull(uid, retrieve) }, "Retrieve");
    return h(
      "article",
      { class: "series-item pacs-study", testid: "pacs-study", "data-uid": uid },
      h("div", { class: "series-title" }, text(study.StudyDescription) || "Study without a description"),
      h("div", { class: "muted" }, facts.filter(Boolean).join(" · ")),
      h("div", { class: "muted" }, [text(study.PatientName), text(study.PatientID)].filter(Boolean).join(" · ")),
      h("div", { class: "series-actions" }, retrieve),
    );
  }

  private async pull(studyUid: string, button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    this.showProblem(null);
    this.jobId = null;
    this.renderStatus();
    try {
      const job = await imagingApi.pacsPull(this.deps.caseId, this.deps.roomId, studyUid);
      this.jobId = job.id;
      this.deps.jobs.setLabel(job.id, "Retrieval from the PACS");
      this.deps.jobs.upsert(job);
      this.renderStatus();
    } catch (err) {
      this.status.replaceChildren();
      this.showProblem(err instanceof ApiError ? err.message : "Could not start the retrieval.");
    } finally {
      button.disabled = !this.allowed;
    }
  }

  private renderStatus(): void {
    const job = this.jobId ? this.deps.jobs.get(this.jobId) : undefined;
    this.status.replaceChildren(h("span", { class: "muted" }, "Retrieval: "), jobLine(job, "pacs-job"));
    const result = job?.state === "succeeded" ? job.result : null;
    if (result) {
      const counts = `${Number(result.retrieved ?? 0)} retrieved: ${Number(result.accepted ?? 0)} accepted, ${Number(result.duplicates ?? 0)} already in the case, ${Number(result.rejected ?? 0)} rejected`;
      this.status.append(h("div", { class: "muted", testid: "pacs-summary" }, counts));
    }
  }

  private showProblem(message: string | null): void {
    this.problem.hidden = message === null;
    this.problem.textContent = message ?? "";
  }
}

/** A QIDO-RS value as text: several values joined, nothing for a missing one. */
function text(value: PacsStudy[string]): string {
  if (value === null || value === undefined) return "";
  return Array.isArray(value) ? value.join(", ") : String(value);
}

function formatDate(yyyymmdd: string): string {
  return /^\d{8}$/.test(yyyymmdd) ? `${yyyymmdd.slice(0, 4)}-${yyyymmdd.slice(4, 6)}-${yyyymmdd.slice(6)}` : yyyymmdd;
}
