/** Tabs of the side panel, with an unread dot for panels that are not showing. */
import { h } from "../dom";

export interface Tab {
  id: string;
  label: string;
  el: HTMLElement;
  /** Called each time the tab is shown (panels that load lazily start here). */
  onShow?: () => void;
}

export class SideTabs {
  readonly el: HTMLElement;
  private buttons = new Map<string, HTMLButtonElement>();
  private current = "";

  constructor(private readonly tabs: Tab[]) {
    const bar = h("div", { class: "tabs", role: "tablist" });
    const body = h("div", { class: "tab-body" });
    for (const tab of tabs) {
      const btn = h("button", { class: "tab", role: "tab", testid: `tab-${tab.id}`, onclick: () => this.show(tab.id) }, tab.label);
      this.buttons.set(tab.id, btn);
      bar.append(btn);
      tab.el.setAttribute("role", "tabpanel");
      tab.el.dataset.tab = tab.id;
      body.append(tab.el);
    }
    this.el = h("div", { class: "side-tabs" }, bar, body);
    this.show(tabs[0].id);
  }

  show(id: string): void {
    this.current = id;
    for (const tab of this.tabs) {
      const on = tab.id === id;
      tab.el.hidden = !on;
      const btn = this.buttons.get(tab.id)!;
      btn.classList.toggle("active", on);
      btn.setAttribute("aria-selected", String(on));
      if (on) btn.classList.remove("unread");
    }
    this.tabs.find((t) => t.id === id)?.onShow?.();
  }

  markUnread(id: string): void {
    if (id !== this.current) this.buttons.get(id)?.classList.add("unread");
  }
}
