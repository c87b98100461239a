/**
 * The CT slice viewer, docked under the 3D view: axial, coronal and sagittal slices of one series'
 * volume, a shared window (presets or a custom width/level), and a linked cursor.
 *
 * The cursor is one point of the volume, kept as a continuous voxel position: the three views always
 * show the slices through it, each with a crosshair on it, and the 3D view shows it as a cross.
 * Clicking a slice pixel moves it within that slice; moving a view to another slice moves it along;
 * clicking the 3D model moves it to the surface point (the server locates it in each plane).
 */
import { ApiError } from "../api";
import { h, toast } from "../dom";
import { imagingApi, PLANES, type PlaneName, type Series, type VolumeLayout } from "../imagingApi";
import type { Vec3 } from "../protocol";
import { lpsToVoxel, pixelOfVoxel, sliceOfVoxel, volumeCentre, voxelAtPixel, voxelToLps } from "./sliceGeometry";
import { SliceView } from "./sliceView";

const WINDOWS: Array<{ key: string; label: string; width: number; level: number }> = [
  { key: "bone", label: "Bone", width: 2000, level: 500 },
  { key: "soft_tissue", label: "Soft tissue", width: 400, level: 40 },
  { key: "lung", label: "Lung", width: 1500, level: -600 },
];

interface Shown {
  caseId: string;
  series: Series;
  volume: VolumeLayout;
  views: Map<PlaneName, SliceView>;
  ijk: Vec3;
}

export class SliceViewer {
  readonly el: HTMLElement;
  private shown: Shown | null = null;
  private generation = 0;
  private windowKey = "bone";
  private readonly title: HTMLElement;
  private readonly grid: HTMLElement;
  private readonly readout: HTMLElement;
  private readonly windowSelect: HTMLSelectElement;
  private readonly widthInput: HTMLInputElement;
  private readonly levelInput: HTMLInputElement;
  private readonly customFields: HTMLElement;

  constructor(
    /** The cursor moved (LPS mm), or null when the viewer closed: the 3D cross follows. */
    private readonly onCursor: (lps: Vec3 | null) => void,
    /** The dock opened or closed: the page gives it room or takes it back. */
    private readonly onToggle: (open: boolean) => void,
  ) {
    this.title = h("span", { class: "slices-title", testid: "slices-title" });
    this.windowSelect = h("select", { testid: "slices-window", title: "Window (grey levels)" }, ...WINDOWS.map((w) => h("option", { value: w.key }, w.label)), h("option", { value: "custom" }, "Custom W/L"));
    this.widthInput = h("input", { type: "number", class: "narrow", testid: "slices-window-width", min: 1, max: 10000, step: 10, value: "2000", title: "Window width (HU)" });
    this.levelInput = h("input", { type: "number", class: "narrow", testid: "slices-window-level", min: -2000, max: 4000, step: 10, value: "500", title: "Window level (HU)" });
    this.customFields = h("span", { class: "slices-custom", hidden: true }, h("label", {}, "W ", this.widthInput), h("label", {}, "L ", this.levelInput));
    this.windowSelect.addEventListener("change", () => this.onWindowChoice());
    for (const input of [this.widthInput, this.levelInput]) input.addEventListener("change", () => this.applyCustomWindow());
    this.readout = h("span", { class: "slices-cursor", testid: "cursor-lps", title: "The linked cursor in patient LPS millimetres" });
    this.grid = h("div", { class: "slices-grid" });
    this.el = h(
      "section",
      { class: "slices-dock", testid: "slices-dock", "aria-label": "CT slices", hidden: true },
      h(
        "div",
        { class: "slices-bar" },
        this.title,
        h("label", { class: "slices-window" }, "Window ", this.windowSelect),
        this.customFields,
        this.readout,
        h("button", { class: "btn small ghost", testid: "slices-close", title: "Close the slice viewer", onclick: () => this.close() }, "Close"),
      ),
      this.grid,
    );
  }

  get isOpen(): boolean {
    return this.shown !== null;
  }

  /** The cursor in LPS mm (for a model's seed point), or null when the viewer is closed. */
  cursor(): Vec3 | null {
    return this.shown ? voxelToLps(this.shown.volume, this.shown.ijk) : null;
  }

  async open(caseId: string, series: Series, label: string): Promise<void> {
    const generation = ++this.generation;
    let volume: VolumeLayout;
    try {
      volume = await imagingApi.volume(caseId, series.id);
    } catch (err) {
      toast(err instanceof ApiError ? err.message : "Could not open the series.", "error");
      return;
    }
    if (generation !== this.generation) return; // another series was opened meanwhile
    this.disposeViews();
    const views = new Map<PlaneName, SliceView>();
    for (const plane of PLANES) {
      const view = new SliceView(plane, volume.planes[plane], {
        imageUrl: (index) => imagingApi.sliceUrl(caseId, series.id, plane, index, this.windowKey),
        onPick: (col, row) => this.pickInPlane(plane, col, row),
        onIndex: (index) => this.sliceMoved(plane, index),
      });
      views.set(plane, view);
    }
    this.shown = { caseId, series, volume, views, ijk: volumeCentre(volume) };
    this.grid.replaceChildren(...[...views.values()].map((v) => v.el));
    this.title.textContent = label;
    this.el.dataset.series = series.id;
    this.el.hidden = false;
    this.onToggle(true);
    this.showCursor();
  }

  close(): void {
    if (!this.shown) return;
    this.generation++;
    this.disposeViews();
    this.el.hidden = true;
    delete this.el.dataset.series;
    this.onCursor(null);
    this.onToggle(false);
  }

  /** A surface point picked in 3D: the server says which slices and pixels it falls on. */
  async locate(point: Vec3): Promise<void> {
    const shown = this.shown;
    if (!shown) return;
    let found: Awaited<ReturnType<typeof imagingApi.locate>>;
    try {
      found = await imagingApi.locate(shown.caseId, shown.series.id, point);
    } catch (err) {
      toast(err instanceof ApiError ? err.message : "Could not locate the point in the slices.", "error");
      return;
    }
    if (shown !== this.shown) return;
    shown.ijk = lpsToVoxel(shown.volume, point);
    for (const plane of PLANES) {
      const at = found[plane];
      const view = shown.views.get(plane)!;
      view.setIndex(at.index);
      view.setCrosshair({ col: at.col_px, row: at.row_px });
    }
    const inside = PLANES.every((p) => found[p].inside);
    this.writeReadout(point, inside);
    this.onCursor(point);
  }

  private pickInPlane(plane: PlaneName, col: number, row: number): void {
    const shown = this.shown;
    if (!shown) return;
    const view = shown.views.get(plane)!;
    shown.ijk = voxelAtPixel(shown.volume, shown.volume.planes[plane], view.sliceIndex, col, row);
    this.showCursor();
  }

  private sliceMoved(plane: PlaneName, index: number): void {
    const shown = this.shown;
    if (!shown) return;
    shown.ijk[shown.volume.planes[plane].axis] = index;
    this.showCursor();
  }

  /** Every view to the slice through the cursor, crosshairs on it, the 3D cross and the readout. */
  private showCursor(): void {
    const shown = this.shown;
    if (!shown) return;
    for (const [plane, view] of shown.views) {
      const layout = shown.volume.planes[plane];
      view.setIndex(sliceOfVoxel(layout, shown.ijk));
      view.setCrosshair(pixelOfVoxel(shown.volume, layout, shown.ijk));
    }
    const lps = voxelToLps(shown.volume, shown.ijk);
    this.writeReadout(lps, true);
    this.onCursor(lps);
  }

  private writeReadout(lps: Vec3, inside: boolean): void {
    const [x, y, z] = lps.map((v) => v.toFixed(1));
    this.readout.textContent = `Cursor x ${x}  y ${y}  z ${z} mm${inside ? "" : " (outside the volume)"}`;
    this.readout.dataset.lps = lps.map((v) => v.toFixed(3)).join(",");
  }

  private onWindowChoice(): void {
    const choice = this.windowSelect.value;
    this.customFields.hidden = choice !== "custom";
    if (choice === "custom") return this.applyCustomWindow();
    const preset = WINDOWS.find((w) => w.key === choice)!;
    this.widthInput.value = String(preset.width); // a custom window starts from the preset in use
    this.levelInput.value = String(preset.level);
    this.setWindow(choice);
  }

  private applyCustomWindow(): void {
    const width = Number(this.widthInput.value);
    const level = Number(this.levelInput.value);
    if (!(width > 0) || !Number.isFinite(level)) return toast("The window width must be above 0 HU.", "error");
    this.setWindow(`${width},${level}`);
  }

  private setWindow(key: string): void {
    this.windowKey = key;
    this.el.dataset.window = key;
    for (const view of this.shown?.views.values() ?? []) view.refresh();
  }

  private disposeViews(): void {
    for (const view of this.shown?.views.values() ?? []) view.dispose();
    this.shown = null;
    this.grid.replaceChildren();
  }
}
