/**
 * The plan panel of a room: its versions (current one first), propose a new version from the room's
 * annotations and chosen artifacts, approve or reject with the surgeon's password, download the report.
 * Re-renders on `refresh()`; call it when a `plan.proposed` or `plan.decided` room event arrives.
 */
import { ApiError, request } from "../api";
import { clear, h, toast } from "../dom";
import { downloadAuthorized } from "./download";

interface PlanVersion {
  id: string;
  version: number;
  status: "pending" | "approved" | "rejected";
  current: boolean;
  content_hash: string;
  proposed_by: string;
  proposed_at_ms: number;
  decision_comment: string;
  content: { notes: string; annotations: Array<{ id: string; label?: string }>; artifacts: Array<{ name: string; version: number; kind: string }> };
  decisions?: Array<{ user_id: string; decision: string; comment: string; at_ms: number }>;
}

export interface PlanPanelOptions {
  roomId: string;
  canDecide: boolean; // the user is a surgeon and not an observer
  chosenArtifacts: () => string[]; // artifact ids the user picked in the scene panel
}

/** Entry: mount the panel into `root`; returns refresh and dispose. */
export function mountPlanPanel(root: HTMLElement, options: PlanPanelOptions): { refresh: () => Promise<void>; dispose: () => void } {
  const base = `/api/rooms/${encodeURIComponent(options.roomId)}`;
  const list = h("div", { class: "plan-versions", testid: "plan-versions" });
  const notes = h("textarea", { placeholder: "Notes for this plan version", rows: 3, maxlength: 2000 });

  async function propose(): Promise<void> {
    try {
      const plan = await request<PlanVersion>("POST", `${base}/plans`, { artifact_ids: options.chosenArtifacts(), notes: notes.value });
      toast(`Plan version ${plan.version} proposed`);
      notes.value = "";
      await refresh();
    } catch (err) {
      toast((err as Error).message, "error");
    }
  }

  async function decide(plan: PlanVersion, decision: "approved" | "rejected"): Promise<void> {
    const comment = prompt(decision === "approved" ? "Comment (optional)" : "Why is it rejected?") ?? "";
    const password = prompt("Confirm with your password") ?? "";
    if (!password) return;
    try {
      await request("POST", `${base}/plans/${encodeURIComponent(plan.id)}/decision`, { decision, comment, password });
      toast(`Plan version ${plan.version} ${decision}`);
      await refresh();
    } catch (err) {
      const code = err instanceof ApiError ? err.code : "";
      toast(code === "reauthentication_failed" ? "Wrong password: nothing was recorded" : (err as Error).message, "error");
    }
  }

  function row(plan: PlanVersion): HTMLElement {
    const pending = plan.status === "pending" && plan.current;
    return h(
      "div",
      { class: `plan-version plan-${plan.status}${plan.current ? "" : " plan-superseded"}`, testid: "plan-version" },
      h("strong", {}, `v${plan.version} · ${plan.status}${plan.current ? "" : " (superseded)"}`),
      h("div", { class: "plan-meta" }, `${plan.content.annotations.length} annotations · ${plan.content.artifacts.map((a) => `${a.name} v${a.version}`).join(", ") || "no artifacts"}`),
      plan.content.notes ? h("div", { class: "plan-notes" }, plan.content.notes) : null,
      plan.decision_comment ? h("div", { class: "plan-comment" }, `“${plan.decision_comment}”`) : null,
      h("code", { class: "plan-hash", title: "sha256 of the plan's content" }, plan.content_hash.slice(0, 16)),
      pending && options.canDecide ? h("button", { onclick: () => void decide(plan, "approved") }, "Approve…") : null,
      pending && options.canDecide ? h("button", { onclick: () => void decide(plan, "rejected") }, "Reject…") : null,
    );
  }

  async function refresh(): Promise<void> {
    const plans = await request<PlanVersion[]>("GET", `${base}/plans`);
    clear(list);
    for (const plan of [...plans].reverse()) list.appendChild(row(plan));
    if (!plans.length) list.appendChild(h("p", { class: "muted" }, "No plan proposed yet."));
  }

  const panel = h(
    "section",
    { class: "plan-panel", testid: "plan-panel" },
    h("h3", {}, "Plan"),
    list,
    notes,
    h("button", { onclick: () => void propose() }, "Propose plan version"),
    h("button", { onclick: () => void downloadAuthorized(`${base}/report.pdf`, "consultation-report.pdf").catch((e: Error) => toast(e.message, "error")) }, "Report (PDF)"),
  );
  root.appendChild(panel);
  void refresh().catch((e: Error) => toast(e.message, "error"));
  return { refresh, dispose: () => panel.remove() };
}
