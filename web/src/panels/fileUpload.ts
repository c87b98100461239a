/** A file chooser (or drop zone) with an upload button, a progress bar and the server's refusal as text. */
import { ApiError, type UploadProgress } from "../api";
import { h } from "../dom";

export interface FileUploadOptions {
  testid: string; // prefix of the test ids: <testid>-input, -submit, -progress, -error
  prompt: string;
  accept?: string;
  multiple: boolean;
  /** Also offer a whole folder (a scanner's DICOM export is a folder of extension-less files). */
  folders?: boolean;
  buttonLabel: string;
  /** Checks the form around the chooser before sending: a sentence for the user, or null when all is well. */
  validate?: () => string | null;
  upload: (files: File[], progress: UploadProgress) => Promise<void>;
}

export class FileUpload {
  readonly el: HTMLElement;
  private readonly input: HTMLInputElement;
  private readonly folderInput: HTMLInputElement | null = null;
  private chosen: File[] = [];
  private readonly submit: HTMLButtonElement;
  private readonly summary: HTMLElement;
  private readonly progress: HTMLProgressElement;
  private readonly problem: HTMLElement;
  private busy = false;
  private allowed = true;

  constructor(private readonly options: FileUploadOptions) {
    const { testid } = options;
    this.input = h("input", { type: "file", class: "file-input", testid: `${testid}-input`, multiple: options.multiple, accept: options.accept });
    this.input.addEventListener("change", () => this.choose(this.input));
    if (options.folders) {
      this.folderInput = h("input", { type: "file", class: "file-input", testid: `${testid}-folder`, webkitdirectory: true, multiple: true });
      this.folderInput.addEventListener("change", () => this.choose(this.folderInput!));
    }
    this.summary = h("span", { class: "file-summary muted" });
    this.submit = h("button", { class: "btn small primary", testid: `${testid}-submit`, disabled: true, onclick: () => void this.send() }, options.buttonLabel);
    this.progress = h("progress", { class: "upload-progress", testid: `${testid}-progress`, max: 1, value: 0, hidden: true });
    this.problem = h("div", { class: "error", testid: `${testid}-error`, role: "alert", hidden: true });
    const zone = h("label", { class: "drop-zone" }, h("span", {}, options.prompt), this.input);
    zone.addEventListener("dragover", (e) => {
      e.preventDefault();
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      if (e.dataTransfer?.files.length) {
        this.input.files = e.dataTransfer.files;
        this.choose(this.input);
      }
    });
    const folder = this.folderInput ? h("label", { class: "folder-choice" }, "or a folder: ", this.folderInput) : null;
    this.el = h("div", { class: "file-upload" }, zone, folder, h("div", { class: "file-actions" }, this.submit, this.summary), this.progress, this.problem);
  }

  /** Observers and other sites may not upload: the chooser stays visible but says why it is off. */
  setAllowed(allowed: boolean, why = ""): void {
    this.allowed = allowed;
    this.input.disabled = !allowed;
    if (this.folderInput) this.folderInput.disabled = !allowed;
    this.el.title = allowed ? "" : why;
    this.renderSelection();
  }

  /** The files of whichever chooser was used last. */
  private choose(from: HTMLInputElement): void {
    this.chosen = Array.from(from.files ?? []);
    for (const other of [this.input, this.folderInput]) if (other && other !== from) other.value = "";
    this.renderSelection();
  }

  private files(): File[] {
    return this.chosen;
  }

  private renderSelection(): void {
    const files = this.files();
    this.submit.disabled = this.busy || !this.allowed || files.length === 0;
    const bytes = files.reduce((sum, f) => sum + f.size, 0);
    this.summary.textContent = files.length === 0 ? "" : `${files.length} file${files.length === 1 ? "" : "s"}, ${formatBytes(bytes)}`;
  }

  private async send(): Promise<void> {
    const files = this.files();
    if (files.length === 0 || this.busy) return;
    const invalid = this.options.validate?.() ?? null;
    if (invalid !== null) {
      this.problem.hidden = false;
      this.problem.textContent = invalid;
      return;
    }
    this.busy = true;
    this.problem.hidden = true;
    this.progress.hidden = false;
    this.progress.value = 0;
    this.renderSelection();
    try {
      await this.options.upload(files, (sent, total) => {
        if (total > 0) this.progress.value = sent / total;
      });
      // Sent: a second click must not send the same files again.
      this.input.value = "";
      if (this.folderInput) this.folderInput.value = "";
      this.chosen = [];
    } catch (err) {
      this.problem.hidden = false;
      this.problem.textContent = err instanceof ApiError ? err.message : "The upload failed.";
    } finally {
      this.busy = false;
      this.progress.hidden = true;
      this.renderSelection();
    }
  }
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} kB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}
