/** The tool strip over the viewport and the hint line that explains the current step. */
import { clear, h } from "../dom";
import { icon, type IconName } from "../icons";
import type { Tool, ToolController } from "../tools";

const BUTTONS: Array<{ tool: Tool & IconName; name: string; key: string }> = [
  { tool: "select", name: "Navigate", key: "Esc" },
  { tool: "marker", name: "Marker", key: "M" },
  { tool: "distance", name: "Distance", key: "D" },
  { tool: "angle", name: "Angle", key: "A" },
  { tool: "plane", name: "Cutting plane", key: "P" },
  { tool: "trajectory", name: "Trajectory", key: "T" },
  { tool: "note", name: "Note", key: "N" },
];

export class Toolbar {
  readonly strip: HTMLElement;
  readonly hint: HTMLElement;
  private buttons = new Map<Tool, HTMLButtonElement>();
  private noteInput: HTMLInputElement;
  private diameterInput: HTMLInputElement;

  constructor(
    private readonly tools: ToolController,
    private readonly canEdit: () => boolean,
    private readonly following: () => boolean,
    undo: () => void,
    redo: () => void,
  ) {
    this.strip = h("div", { class: "toolbar", role: "toolbar", "aria-label": "Annotation tools", testid: "toolbar" });
    for (const b of BUTTONS) {
      const btn = h(
        "button",
        { class: "tool-btn", testid: `tool-${b.tool}`, title: `${b.name} (${b.key})`, "aria-pressed": "false", onclick: () => this.pick(b.tool) },
        icon(b.tool),
        h("span", { class: "tool-name" }, b.name),
        h("kbd", { class: "tool-key" }, b.key),
      );
      this.buttons.set(b.tool, btn);
      this.strip.append(btn);
    }
    this.strip.append(
      h("span", { class: "toolbar-sep" }),
      h("button", { class: "tool-btn", testid: "toolbar-undo", title: "Undo (Ctrl+Z)", onclick: undo }, icon("undo"), h("span", { class: "tool-name" }, "Undo")),
      h("button", { class: "tool-btn", testid: "toolbar-redo", title: "Redo (Ctrl+Shift+Z)", onclick: redo }, icon("redo"), h("span", { class: "tool-name" }, "Redo")),
    );

    this.noteInput = h("input", { class: "hint-input", testid: "note-text", placeholder: "Note text", maxlength: 4000 });
    this.noteInput.addEventListener("input", () => (tools.noteText = this.noteInput.value));
    this.noteInput.addEventListener("keydown", (e) => {
      e.stopPropagation();
      if (e.key === "Escape") this.pick("select");
    });
    this.diameterInput = h("input", { class: "hint-input narrow", testid: "trajectory-diameter", type: "number", min: 0.5, max: 50, step: 0.5, value: String(tools.diameterMm) });
    this.diameterInput.addEventListener("change", () => {
      const d = Number(this.diameterInput.value);
      if (d > 0 && d <= 50) tools.diameterMm = d;
      else this.diameterInput.value = String(tools.diameterMm);
    });
    this.diameterInput.addEventListener("keydown", (e) => e.stopPropagation());
    this.hint = h("div", { class: "tool-hint", testid: "tool-hint", role: "status" });
    this.render();
  }

  pick(tool: Tool): void {
    this.tools.setTool(tool);
    if (tool === "note") queueMicrotask(() => this.focusNote());
  }

  focusNote(): void {
    this.noteInput.focus();
  }

  render(): void {
    const editable = this.canEdit();
    for (const [tool, btn] of this.buttons) {
      const on = this.tools.tool === tool;
      btn.classList.toggle("active", on);
      btn.setAttribute("aria-pressed", String(on));
      btn.disabled = tool !== "select" && !editable;
    }
    clear(this.hint);
    const tool = this.tools.tool;
    let text = this.tools.hint();
    if (tool === "select" && this.following()) text = "Your view follows the presenter. Tick “Browse freely” to look around on your own.";
    else if (tool === "select" && !editable) text = "You can look around; this room is read-only for you.";
    this.hint.append(h("span", {}, text));
    if (tool === "trajectory") this.hint.append(h("label", { class: "hint-field" }, "⌀ mm ", this.diameterInput));
    if (tool === "note") {
      if (this.noteInput.value !== this.tools.noteText) this.noteInput.value = this.tools.noteText;
      this.hint.append(
        this.noteInput,
        h("button", { class: "btn small", testid: "note-add-unpinned", onclick: () => this.tools.addNoteWithoutPoint() }, "Add without point"),
      );
    }
    if (tool !== "select") this.hint.append(h("button", { class: "btn small ghost", onclick: () => this.pick("select"), title: "Esc" }, "Done"));
  }
}
