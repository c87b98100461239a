/**
 * One plane of the slice viewer: the slice image (fetched with the session's token as a blob, shown
 * through an object URL that is revoked once replaced), a slider and the mouse wheel to move through
 * slices, and a crosshair at the linked cursor. Clicking or dragging on the image picks a pixel.
 *
 * At most one image request per view is in flight; while it loads, only the latest wanted slice is
 * remembered, so dragging the slider across 500 slices asks for a handful of images, not 500.
 */
import { ApiError, getBlob } from "../api";
import { h } from "../dom";
import type { PlaneLayout, PlaneName } from "../imagingApi";

const SVG_NS = "http://www.w3.org/2000/svg";
const WHEEL_STEP_PX = 40; // trackpads send many small deltas; a mouse notch is about 100

export interface SliceViewDeps {
  imageUrl: (index: number) => string;
  /** The user picked an image pixel (whole numbers at pixel centres). */
  onPick: (col: number, row: number) => void;
  /** The user moved to another slice (slider, wheel). */
  onIndex: (index: number) => void;
}

export class SliceView {
  readonly el: HTMLElement;
  private index = 0;
  private readonly box: HTMLElement;
  private readonly frame: HTMLElement;
  private readonly img: HTMLImageElement;
  private readonly slider: HTMLInputElement;
  private readonly readout: HTMLElement;
  private readonly problem: HTMLElement;
  private readonly vertical: SVGLineElement;
  private readonly horizontal: SVGLineElement;
  private readonly crosshair: SVGSVGElement;
  private readonly resizeObserver: ResizeObserver;
  private shownUrl: string | null = null; // the request URL of the image on screen
  private objectUrl: string | null = null;
  private loading = false;
  private disposed = false;
  private wheelAccumulated = 0;
  private dragging: number | null = null;

  constructor(
    readonly plane: PlaneName,
    readonly layout: PlaneLayout,
    private readonly deps: SliceViewDeps,
  ) {
    const { width_px: w, height_px: hgt } = layout;
    this.img = h("img", { class: "slice-image", testid: `slice-image-${plane}`, alt: `${plane} slice`, draggable: "false" });
    this.crosshair = document.createElementNS(SVG_NS, "svg");
    this.crosshair.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
    this.crosshair.setAttribute("preserveAspectRatio", "none");
    this.crosshair.classList.add("slice-crosshair");
    this.vertical = line(this.crosshair);
    this.horizontal = line(this.crosshair);
    this.crosshair.style.display = "none";
    this.frame = h("div", { class: "slice-frame", testid: `slice-frame-${plane}` }, this.img);
    this.frame.append(this.crosshair);
    this.problem = h("div", { class: "slice-problem", role: "alert", hidden: true });
    this.box = h("div", { class: "slice-box" }, this.frame, this.problem);
    this.slider = h("input", { type: "range", class: "slice-slider", testid: `slice-slider-${plane}`, min: 0, max: layout.count - 1, step: 1, value: "0", "aria-label": `${plane} slice` });
    this.readout = h("span", { class: "slice-readout", testid: `slice-index-${plane}` });
    this.el = h(
      "div",
      { class: "slice-view", testid: "slice-view", "data-plane": plane },
      h("div", { class: "slice-head" }, h("span", { class: "slice-plane" }, PLANE_LABEL[plane]), this.readout),
      this.box,
      this.slider,
    );

    this.slider.addEventListener("input", () => this.setIndex(Number(this.slider.value), true));
    this.box.addEventListener("wheel", this.onWheel, { passive: false });
    this.frame.addEventListener("pointerdown", this.onPointerDown);
    this.frame.addEventListener("pointermove", this.onPointerMove);
    this.frame.addEventListener("pointerup", this.onPointerUp);
    this.frame.addEventListener("pointercancel", this.onPointerUp);
    this.resizeObserver = new ResizeObserver(() => this.fit());
    this.resizeObserver.observe(this.box);
  }

  get sliceIndex(): number {
    return this.index;
  }

  /** Show slice `index` (clamped); `fromUser` reports it to the viewer, which moves the cursor along. */
  setIndex(index: number, fromUser = false): void {
    const clamped = Math.min(this.layout.count - 1, Math.max(0, Math.round(index)));
    this.index = clamped;
    this.slider.value = String(clamped);
    this.readout.textContent = `${clamped + 1} / ${this.layout.count}`;
    this.el.dataset.index = String(clamped);
    void this.pump();
    if (fromUser) this.deps.onIndex(clamped);
  }

  /** The window changed: the URL of the current slice did too. */
  refresh(): void {
    void this.pump();
  }

  /** The cursor's pixel in this plane's image, or null to hide the crosshair. */
  setCrosshair(at: { col: number; row: number } | null): void {
    this.crosshair.style.display = at ? "" : "none";
    if (!at) return;
    const x = String(at.col + 0.5); // SVG units: pixel edges at whole numbers, so a centre is at +0.5
    const y = String(at.row + 0.5);
    setLine(this.vertical, x, "0", x, String(this.layout.height_px));
    setLine(this.horizontal, "0", y, String(this.layout.width_px), y);
    this.frame.dataset.cursor = `${at.col.toFixed(2)},${at.row.toFixed(2)}`;
  }

  dispose(): void {
    this.disposed = true;
    this.resizeObserver.disconnect();
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
    this.objectUrl = null;
  }

  private async pump(): Promise<void> {
    if (this.loading || this.disposed) return;
    const url = this.deps.imageUrl(this.index);
    if (url === this.shownUrl) return;
    const index = this.index;
    this.loading = true;
    try {
      const blob = await getBlob(url);
      if (this.disposed) return;
      const objectUrl = URL.createObjectURL(blob);
      this.img.src = objectUrl;
      await this.img.decode().catch(() => undefined); // a broken image still replaces the old one
      if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
      this.objectUrl = objectUrl;
      this.img.dataset.index = String(index);
      this.problem.hidden = true;
    } catch (err) {
      this.problem.hidden = false;
      this.problem.textContent = err instanceof ApiError ? err.message : "Could not load the slice.";
    } finally {
      this.shownUrl = url; // also after a failure: retrying the same URL in a loop would not help
      this.loading = false;
    }
    void this.pump(); // the user may have moved on while this one loaded
  }

  /** Largest frame with the image's aspect (square pixels) that fits the box. */
  private fit(): void {
    const { clientWidth: bw, clientHeight: bh } = this.box;
    if (bw === 0 || bh === 0) return;
    const scale = Math.min(bw / this.layout.width_px, bh / this.layout.height_px);
    this.frame.style.width = `${Math.floor(this.layout.width_px * scale)}px`;
    this.frame.style.height = `${Math.floor(this.layout.height_px * scale)}px`;
  }

  private pixelAt(ev: PointerEvent): { col: number; row: number } {
    const rect = this.frame.getBoundingClientRect();
    const clamp = (v: number, n: number) => Math.min(n - 0.5, Math.max(-0.5, v));
    return {
      col: clamp(((ev.clientX - rect.left) / rect.width) * this.layout.width_px - 0.5, this.layout.width_px),
      row: clamp(((ev.clientY - rect.top) / rect.height) * this.layout.height_px - 0.5, this.layout.height_px),
    };
  }

  private onPointerDown = (ev: PointerEvent): void => {
    if (ev.button !== 0) return;
    ev.preventDefault();
    this.dragging = ev.pointerId;
    this.frame.setPointerCapture(ev.pointerId);
    const { col, row } = this.pixelAt(ev);
    this.deps.onPick(col, row);
  };

  private onPointerMove = (ev: PointerEvent): void => {
    if (this.dragging !== ev.pointerId) return;
    const { col, row } = this.pixelAt(ev);
    this.deps.onPick(col, row);
  };

  private onPointerUp = (ev: PointerEvent): void => {
    if (this.dragging === ev.pointerId) this.dragging = null;
  };

  private onWheel = (ev: WheelEvent): void => {
    ev.preventDefault(); // scroll slices, not the page
    this.wheelAccumulated += ev.deltaMode === WheelEvent.DOM_DELTA_PIXEL ? ev.deltaY : Math.sign(ev.deltaY) * WHEEL_STEP_PX;
    if (Math.abs(this.wheelAccumulated) < WHEEL_STEP_PX) return;
    const step = Math.sign(this.wheelAccumulated);
    this.wheelAccumulated = 0;
    this.setIndex(this.index + step, true);
  };
}

const PLANE_LABEL: Record<PlaneName, string> = { axial: "Axial", coronal: "Coronal", sagittal: "Sagittal" };

function line(svg: SVGSVGElement): SVGLineElement {
  const el = document.createElementNS(SVG_NS, "line");
  el.setAttribute("vector-effect", "non-scaling-stroke");
  svg.appendChild(el);
  return el;
}

function setLine(el: SVGLineElement, x1: string, y1: string, x2: string, y2: string): void {
  el.setAttribute("x1", x1);
  el.setAttribute("y1", y1);
  el.setAttribute("x2", x2);
  el.setAttribute("y2", y2);
}
