/** The annotations list: select, rename, delete (with base_version), undo and redo. */
import { clear, h } from "../dom";
import { icon } from "../icons";
import { KIND_LABEL, rawValue, titleOf, valueText } from "../format";
import type { Annotation } from "../protocol";
import type { RoomContext } from "./context";

export class AnnotationsPanel {
  readonly el: HTMLElement;
  private list: HTMLUListElement;
  private editing: { id: string; value: string; base: number } | null = null;

  constructor(private readonly ctx: RoomContext) {
    this.list = h("ul", { class: "ann-list", testid: "annotations-list" });
    this.el = h(
      "div",
      { class: "panel annotations-panel" },
      h(
        "div",
        { class: "panel-actions" },
        h("button", { class: "btn small", testid: "undo", title: "Undo (Ctrl+Z)", onclick: () => this.undo() }, icon("undo", 15), "Undo"),
        h("button", { class: "btn small", testid: "redo", title: "Redo (Ctrl+Shift+Z)", onclick: () => this.redo() }, icon("redo", 15), "Redo"),
      ),
      this.list,
    );
  }

  undo(): void {
    if (this.ctx.state.canEdit) void this.ctx.op("undo");
  }

  redo(): void {
    if (this.ctx.state.canEdit) void this.ctx.op("redo");
  }

  render(): void {
    const { state } = this.ctx;
    clear(this.list);
    if (state.annotations.size === 0) {
      this.list.append(h("li", { class: "empty", testid: "annotations-empty" }, "No annotations yet. Pick a tool (M, D, A, P, T, N) and click the model."));
      return;
    }
    for (const a of state.annotations.values()) this.list.append(this.item(a));
    this.list.querySelector<HTMLInputElement>("input.ann-edit")?.focus();
  }

  /** Start renaming the selected annotation (also bound to F2 / double-click). */
  editSelected(): void {
    const a = this.ctx.selected ? this.ctx.state.annotations.get(this.ctx.selected) : undefined;
    if (a && this.ctx.state.canEdit) {
      this.editing = { id: a.id, value: a.label ?? "", base: a.version };
      this.render();
    }
  }

  deleteSelected(): void {
    const a = this.ctx.selected ? this.ctx.state.annotations.get(this.ctx.selected) : undefined;
    if (a) this.remove(a);
  }

  private item(a: Annotation): HTMLLIElement {
    const { state, selected } = this.ctx;
    const color = a.color ?? state.colorOf(a.author);
    const editing = this.editing?.id === a.id;
    const raw = rawValue(a);
    const title = editing ? this.editInput(a) : h("div", { class: "ann-title", testid: "annotation-label" }, titleOf(a));
    const li = h(
      "li",
      {
        class: `ann-item${selected === a.id ? " selected" : ""}`,
        testid: "annotation-item",
        "data-id": a.id,
        "data-kind": a.kind,
        onclick: () => this.ctx.select(selected === a.id ? null : a.id),
        ondblclick: () => {
          this.ctx.select(a.id);
          this.editSelected();
        },
      },
      h("span", { class: "swatch", style: `background:${color}` }),
      h(
        "div",
        { class: "ann-main" },
        title,
        h("div", { class: "ann-value", testid: "annotation-value", "data-value": raw === undefined ? null : String(raw), title: raw === undefined ? null : String(raw) }, valueText(a)),
        h("div", { class: "ann-meta" }, `${KIND_LABEL[a.kind]} · ${state.nameOf(a.author ?? "")} · v${a.version}`),
      ),
    );
    if (state.canEdit && !editing) {
      li.append(
        h("button", { class: "icon-btn", title: "Rename", testid: "annotation-edit", onclick: (e: Event) => this.startEdit(e, a) }, icon("edit", 16)),
        h("button", { class: "icon-btn danger", title: "Delete", testid: "annotation-delete", onclick: (e: Event) => this.onDelete(e, a) }, icon("trash", 16)),
      );
    }
    return li;
  }

  private editInput(a: Annotation): HTMLInputElement {
    const input = h("input", { class: "ann-edit", testid: "annotation-label-input", value: this.editing?.value ?? "", maxlength: 200, placeholder: KIND_LABEL[a.kind] });
    input.addEventListener("click", (e) => e.stopPropagation());
    input.addEventListener("input", () => this.editing && (this.editing.value = input.value));
    input.addEventListener("keydown", (e) => {
      e.stopPropagation(); // keep tool shortcuts out of the text field
      if (e.key === "Enter") this.commitEdit(a, input.value);
      if (e.key === "Escape") {
        this.editing = null;
        this.render();
      }
    });
    input.addEventListener("blur", () => input.isConnected && this.editing?.id === a.id && this.commitEdit(a, input.value));
    return input;
  }

  private startEdit(e: Event, a: Annotation): void {
    e.stopPropagation();
    this.editing = { id: a.id, value: a.label ?? "", base: a.version };
    this.render();
  }

  private commitEdit(a: Annotation, value: string): void {
    const base = this.editing?.base ?? a.version;
    this.editing = null;
    const current = this.ctx.state.annotations.get(a.id);
    if (current && value !== (current.label ?? "")) {
      // The version the user started editing from: if someone changed it since, the server refuses
      // with stale_version instead of silently overwriting their change.
      void this.ctx.op("annotation.update", { id: a.id, base_version: base, label: value });
    }
    this.render();
  }

  private onDelete(e: Event, a: Annotation): void {
    e.stopPropagation();
    this.remove(a);
  }

  private remove(a: Annotation): void {
    if (!this.ctx.state.canEdit) return;
    if (this.ctx.selected === a.id) this.ctx.select(null);
    void this.ctx.op("annotation.delete", { id: a.id, base_version: a.version });
  }
}
