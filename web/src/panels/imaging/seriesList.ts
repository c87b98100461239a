/** The case's series: modality, size, the volume built from them (with its notes), slices and model building. */
import { h } from "../../dom";
import type { Series } from "../../imagingApi";
import { BuildModelForm, type BuildModelDeps } from "./buildModelForm";

export interface SeriesListDeps extends BuildModelDeps {
  openSlices: (series: Series, label: string) => void;
  canBuild: () => boolean;
}

export class SeriesList {
  readonly el = h("div", { class: "series-list", testid: "series-list" });
  // Kept across refreshes, so a form being filled in (and its job's status) survives a new upload.
  private forms = new Map<string, BuildModelForm>();
  private open = new Set<string>();

  constructor(private readonly deps: SeriesListDeps) {}

  render(series: Series[]): void {
    if (series.length === 0) {
      this.el.replaceChildren(h("p", { class: "empty", testid: "series-empty" }, "No series yet. Upload DICOM files or a zip of a study."));
      return;
    }
    this.el.replaceChildren(...series.map((s) => this.item(s)));
  }

  private item(s: Series): HTMLElement {
    const label = seriesLabel(s);
    const volume = s.volume;
    const details = h("div", { class: "series-details" });
    const actions = h("div", { class: "series-actions" });
    if (volume) {
      details.append(
        h("div", { testid: "series-volume" }, `Volume ${volume.size.join(" × ")} voxels · ${volume.spacing_mm.map((v) => v.toFixed(2)).join(" × ")} mm`),
      );
      const notes = volume.notes ?? [];
      if (notes.length) details.append(h("ul", { class: "series-notes", testid: "series-notes" }, ...notes.map((n) => h("li", {}, n))));
      actions.append(
        h("button", { class: "btn small", testid: "series-view-slices", onclick: () => this.deps.openSlices(s, label) }, "View slices"),
        h(
          "button",
          {
            class: "btn small",
            testid: "series-build-toggle",
            disabled: !this.deps.canBuild(),
            title: this.deps.canBuild() ? "Build a 3D model from this series" : "Observers cannot build models",
            "aria-expanded": String(this.open.has(s.id)),
            onclick: () => this.toggle(s),
          },
          "Build model…",
        ),
      );
    } else {
      details.append(h("div", { class: "muted", testid: "series-no-volume" }, "No volume: not a CT or MR stack, or refused (see the report below)."));
    }
    const item = h(
      "article",
      { class: "series-item", testid: "series-item", "data-id": s.id, "data-has-volume": String(volume !== null) },
      h("div", { class: "series-title" }, label),
      h("div", { class: "muted" }, `${s.instances} image${s.instances === 1 ? "" : "s"}`),
      details,
      actions,
    );
    if (volume && this.open.has(s.id)) item.append(this.form(s).el);
    return item;
  }

  private toggle(s: Series): void {
    if (this.open.has(s.id)) this.open.delete(s.id);
    else this.open.add(s.id);
    const item = this.el.querySelector<HTMLElement>(`[data-testid=series-item][data-id="${CSS.escape(s.id)}"]`);
    item?.replaceWith(this.item(s));
  }

  private form(s: Series): BuildModelForm {
    let form = this.forms.get(s.id);
    if (!form) {
      form = new BuildModelForm(s, this.deps);
      this.forms.set(s.id, form);
    }
    return form;
  }
}

export function seriesLabel(s: Series): string {
  const parts = [s.modality || "Series", s.number !== null ? `#${s.number}` : "", s.description].filter(Boolean);
  return parts.join(" · ");
}
