/** The audit browser for site admins: filters (user, action, case, room, time range), paging, CSV export. */
import { request } from "../api";
import { clear, h, toast } from "../dom";
import { downloadAuthorized } from "../record/download";

interface AuditRow {
  seq: number;
  ts_ms: number;
  actor_username: string | null;
  actor_id: string | null;
  actor_site_id: string | null;
  action: string;
  target_type: string;
  target_id: string;
  room_id: string | null;
  case_id: string | null;
  ip: string | null;
}

const FIELDS = ["user_id", "action", "case_id", "room_id"] as const;

/** Entry: mount the audit browser into `root`; returns dispose. */
export function mountAuditBrowser(root: HTMLElement): () => void {
  const inputs = Object.fromEntries(FIELDS.map((f) => [f, h("input", { placeholder: f === "action" ? "action (plan.* for all)" : f })])) as Record<(typeof FIELDS)[number], HTMLInputElement>;
  const since = h("input", { type: "datetime-local", title: "from" });
  const until = h("input", { type: "datetime-local", title: "until" });
  const body = h("tbody");
  const status = h("p", { class: "muted" });
  let next: number | null = null;

  function query(): URLSearchParams {
    const params = new URLSearchParams();
    for (const f of FIELDS) if (inputs[f].value.trim()) params.set(f, inputs[f].value.trim());
    if (since.value) params.set("since_ms", String(new Date(since.value).getTime()));
    if (until.value) params.set("until_ms", String(new Date(until.value).getTime()));
    return params;
  }

  async function load(more = false): Promise<void> {
    const params = query();
    if (more && next !== null) params.set("before_seq", String(next));
    try {
      const page = await request<{ rows: AuditRow[]; next_before_seq: number | null }>("GET", `/api/admin/audit?${params}`);
      if (!more) clear(body);
      for (const r of page.rows) {
        body.appendChild(h("tr", {}, h("td", {}, r.seq), h("td", {}, new Date(r.ts_ms).toLocaleString()), h("td", {}, r.actor_username ?? r.actor_id ?? "system"),
          h("td", {}, r.actor_site_id ?? ""), h("td", {}, r.action), h("td", {}, `${r.target_type} ${r.target_id}`), h("td", {}, r.case_id ?? ""), h("td", {}, r.room_id ?? ""), h("td", {}, r.ip ?? "")));
      }
      next = page.next_before_seq;
      status.textContent = next === null ? "End of the trail." : "";
    } catch (err) {
      toast((err as Error).message, "error");
    }
  }

  async function verify(): Promise<void> {
    const report = await request<{ ok: boolean; rows_checked: number; problems: Array<{ problem: string; seq?: number }> }>("GET", "/api/admin/audit/verify");
    toast(report.ok ? `Hash chain intact (${report.rows_checked} rows)` : `Chain broken: ${report.problems.map((p) => `${p.problem} at ${p.seq ?? "?"}`).join(", ")}`, report.ok ? "info" : "error");
  }

  const panel = h(
    "section",
    { class: "admin-audit", testid: "admin-audit" },
    h("h2", {}, "Audit trail"),
    h("div", { class: "filters" }, ...FIELDS.map((f) => inputs[f]), since, until,
      h("button", { onclick: () => void load() }, "Filter"),
      h("button", { onclick: () => void downloadAuthorized(`/api/admin/audit.csv?${query()}`, "trinity-audit.csv").catch((e: Error) => toast(e.message, "error")) }, "Export CSV"),
      h("button", { onclick: () => void verify().catch((e: Error) => toast(e.message, "error")) }, "Verify chain")),
    h("table", { class: "audit-table" }, h("thead", {}, h("tr", {}, ...["#", "When", "Who", "Site", "Action", "Target", "Case", "Room", "IP"].map((t) => h("th", {}, t)))), body),
    h("button", { onclick: () => void load(true) }, "Older…"),
    status,
  );
  root.appendChild(panel);
  void load();
  return () => panel.remove();
}
