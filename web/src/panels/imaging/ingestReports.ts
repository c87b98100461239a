/**
 * Ingest reports: per upload, how many files were accepted, duplicates and rejections, and for every
 * refused file its name and the server's reason. File names and reasons come from uploaded data
 * (`<script>` in a zip entry's name is possible), so they only ever become text nodes.
 */
import { formatTime, h } from "../../dom";
import type { IngestFile, IngestReport } from "../../imagingApi";

const PROBLEM_LINES_SHOWN = 50;

const STATUS_LABEL: Record<IngestFile["status"], string> = {
  accepted: "accepted",
  duplicate: "already in the case",
  rejected: "rejected",
  volume_refused: "no volume",
};

export function renderReports(reports: IngestReport[]): HTMLElement {
  const list = h("div", { class: "ingest-reports", testid: "ingest-reports" });
  if (reports.length === 0) {
    list.append(h("p", { class: "empty", testid: "ingest-reports-empty" }, "No uploads yet."));
    return list;
  }
  for (const report of reports) list.append(renderReport(report));
  return list;
}

function renderReport(report: IngestReport): HTMLElement {
  const duplicates = report.files.filter((f) => f.status === "duplicate").length;
  const problems = report.files.filter((f) => f.status === "rejected" || f.status === "volume_refused");
  const counts = [`${report.accepted} accepted`, duplicates ? `${duplicates} already in the case` : "", `${report.rejected} rejected`].filter(Boolean).join(" · ");
  const lines = h("ul", { class: "ingest-lines" });
  for (const file of problems.slice(0, PROBLEM_LINES_SHOWN)) lines.append(renderLine(file));
  if (problems.length > PROBLEM_LINES_SHOWN) lines.append(h("li", { class: "muted" }, `and ${problems.length - PROBLEM_LINES_SHOWN} more`));
  return h(
    "article",
    { class: `ingest-report${problems.length ? " has-problems" : ""}`, testid: "ingest-report", "data-id": report.id, "data-rejected": report.rejected },
    h("div", { class: "ingest-head" }, h("span", { class: "ingest-source" }, sourceLabel(report.source)), h("time", { class: "muted" }, formatTime(report.created_at_ms))),
    h("div", { class: "ingest-counts", testid: "ingest-counts" }, counts),
    problems.length ? lines : h("div", { class: "muted" }, "Every file was accepted."),
  );
}

function renderLine(file: IngestFile): HTMLElement {
  return h(
    "li",
    { class: `ingest-line ${file.status}`, testid: "ingest-line", "data-status": file.status, "data-code": file.code ?? "" },
    h("div", { class: "ingest-name", testid: "ingest-name" }, file.name),
    h("div", { class: "ingest-reason", testid: "ingest-reason" }, `${STATUS_LABEL[file.status]}: ${file.message ?? file.code ?? "no reason given"}`),
  );
}

function sourceLabel(source: string | undefined): string {
  switch (source) {
    case "upload":
    case undefined:
      return "Upload";
    case "stow":
      return "DICOMweb (STOW-RS)";
    case "scp":
      return "From a modality (C-STORE)";
    case "pacs":
      return "PACS retrieval";
    default:
      return source;
  }
}
