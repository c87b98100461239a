/** The version selector of a scene model: everyone sees the version picked here (scene.model.set). */
import { h } from "../dom";
import type { SceneModel } from "../protocol";
import type { RoomContext } from "./context";

export function versionSelect(ctx: RoomContext, model: SceneModel): HTMLSelectElement {
  const versions = model.versions?.length ? model.versions.map((v) => v.version) : [model.version ?? 1];
  const current = model.version ?? versions[versions.length - 1];
  const select = h("select", {
    class: "version-select",
    testid: "model-version",
    "data-model": model.id,
    title: "Version shown to everyone in the room; older versions stay available",
    disabled: !ctx.state.canEdit || versions.length < 2,
  });
  for (const v of versions) select.append(h("option", { value: String(v) }, `v${v}`));
  select.value = String(current);
  select.addEventListener("change", () => void ctx.op("scene.model.set", { id: model.id, version: Number(select.value) }));
  return select;
}
