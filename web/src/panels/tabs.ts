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

  private readonly bar = h("div", { class: "tabs", role: "tablist" });
  private readonly body = h("div", { class: "tab-body" });

  constructor(private readonly tabs: Tab[]) {
    for (const tab of tabs) this.attach(tab);
    this.el = h("div", { class: "side-tabs" }, this.bar, this.body);
    this.show(tabs[0].id);
  }

  /** A tab known only later (a maker room's printers); `first` puts it in front and shows it. */
  add(tab: Tab, first = false): void {
    if (first) this.tabs.unshift(tab);
    else this.tabs.push(tab);
    this.attach(tab, first);
    if (first) this.show(tab.id);
    else tab.el.hidden = true;
  }

  private attach(tab: Tab, first = false): void {
    const btn = h("button", { class: "tab", role: "tab", testid: `tab-${tab.id}`, onclick: () => this.show(tab.id) }, tab.label);
    this.buttons.set(tab.id, btn);
    tab.el.setAttribute("role", "tabpanel");
    tab.el.dataset.tab = tab.id;
    if (first) {
      this.bar.prepend(btn);
      this.body.prepend(tab.el);
    } else {
      this.bar.append(btn);
      this.body.append(tab.el);
    }
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
