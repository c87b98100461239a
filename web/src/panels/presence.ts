/** Who is in the room: members with their colour, online state, role and the presenter badge. */
import { clear, h } from "../dom";
import type { RoomContext } from "./context";

interface Row {
  user: string;
  name: string;
  color: string;
  role: string;
  status: string; // online | active | idle | offline
}

export class PresencePanel {
  readonly el: HTMLElement;
  private list: HTMLUListElement;

  constructor(private readonly ctx: RoomContext) {
    this.list = h("ul", { class: "presence-list", testid: "presence-list" });
    this.el = h("section", { class: "presence" }, this.list);
  }

  render(): void {
    const { state } = this.ctx;
    const rows = new Map<string, Row>();
    for (const m of state.members.values()) rows.set(m.user, { user: m.user, name: m.name, color: m.color, role: m.role, status: "offline" });
    for (const p of state.presence.values()) {
      const row = rows.get(p.user);
      const status = p.status === "online" ? "active" : p.status;
      if (row) row.status = status;
      else rows.set(p.user, { user: p.user, name: p.name, color: p.color, role: "", status });
    }
    const order = (r: Row) => (r.status === "offline" ? 1 : 0);
    const sorted = [...rows.values()].sort((a, b) => order(a) - order(b) || a.name.localeCompare(b.name));
    clear(this.list);
    for (const r of sorted) this.list.append(this.item(r));
  }

  private item(r: Row): HTMLLIElement {
    const { state } = this.ctx;
    const me = r.user === state.you?.user;
    const presenting = state.presenter === r.user;
    const canHandOver = state.amPresenter && !me && r.status !== "offline" && r.role !== "observer";
    return h(
      "li",
      { class: `presence-item ${r.status}`, testid: "presence-item", "data-user": r.user, "data-status": r.status, title: `${r.name} (${r.role || "guest"}) — ${r.status}` },
      h("span", { class: "avatar", style: `background:${r.color}` }, initials(r.name)),
      h("span", { class: "presence-name" }, r.name, me ? " (you)" : ""),
      presenting ? h("span", { class: "badge presenting", testid: "presenter-badge" }, "presenting") : null,
      r.status === "idle" ? h("span", { class: "badge" }, "idle") : null,
      canHandOver
        ? h("button", { class: "btn tiny", testid: "presence-handover", onclick: () => void this.ctx.op("presenter.handover", { to: r.user }) }, "Hand over")
        : null,
    );
  }
}

function initials(name: string): string {
  const parts = name.replace(/^(dr|prof)\.?\s+/i, "").split(/\s+/).filter(Boolean);
  return (parts[0]?.[0] ?? "?").toUpperCase() + (parts[1]?.[0] ?? "").toUpperCase();
}
