/** Scene models: per-model visibility, opacity and colour (scene.model.set). */
import { clear, h } from "../dom";
import type { SceneModel } from "../protocol";
import type { ModelLayer } from "../scene/models";
import type { RoomContext } from "./context";
import { versionSelect } from "./modelVersion";

export class ScenePanel {
  readonly el: HTMLElement;
  private list: HTMLElement;

  constructor(
    private readonly ctx: RoomContext,
    private readonly layer: ModelLayer,
  ) {
    this.list = h("div", { class: "model-list", testid: "model-list" });
    this.el = h("div", { class: "panel scene-panel" }, this.list);
  }

  render(): void {
    const { state } = this.ctx;
    clear(this.list);
    if (state.models.size === 0) {
      this.list.append(
        h("p", { class: "empty", testid: "models-empty" }, "No models in this room yet. Build one from a CT series in the Imaging tab or upload a mesh in the Design tab; meanwhile the viewport shows a placeholder bone."),
      );
      return;
    }
    for (const m of state.models.values()) this.list.append(this.item(m));
  }

  private item(m: SceneModel): HTMLElement {
    const disabled = !this.ctx.state.canEdit;
    const set = (data: Record<string, unknown>) => void this.ctx.op("scene.model.set", { id: m.id, ...data });
    const load = m.url ? this.layer.loadState(m.id) : "none";
    const status = !m.url ? "no geometry yet" : load === "loading" ? "loading…" : load === "error" ? "failed to load" : "";
    const visible = h("input", { type: "checkbox", checked: m.visible, disabled, testid: "model-visible", title: "Visible" });
    visible.addEventListener("change", () => set({ visible: visible.checked }));
    const opacity = h("input", { type: "range", min: 0, max: 1, step: 0.05, value: String(m.opacity), disabled, testid: "model-opacity", title: "Opacity" });
    opacity.addEventListener("change", () => set({ opacity: Number(opacity.value) }));
    const color = h("input", { type: "color", value: m.color, disabled, testid: "model-color", title: "Colour" });
    color.addEventListener("change", () => set({ color: color.value }));
    return h(
      "div",
      { class: "model-item", testid: "model-item", "data-id": m.id },
      h("label", { class: "model-name" }, visible, " ", m.name),
      status ? h("span", { class: "model-status" }, status) : null,
      h("div", { class: "model-controls" }, h("label", {}, "Opacity ", opacity), color, versionSelect(this.ctx, m)),
    );
  }
}
