/**
 * Annotation tools: collect surface points with clicks (a drag still orbits), preview the shape, and
 * hand the finished geometry to `create`. The server validates it and computes the measurement.
 *
 * The cutting plane is placed with a press on the surface (normal = surface normal); dragging before
 * releasing tilts the normal in the view plane.
 */
import * as THREE from "three";
import { cylinderBetween, dot, planeMesh, polyline } from "./scene/annotations3d";
import type { SurfaceHit, Viewport } from "./scene/viewport";
import type { AnnotationData, AnnotationKind, Vec3 } from "./protocol";

export type Tool = "select" | AnnotationKind;

export const TOOL_KEYS: Record<string, Tool> = { m: "marker", d: "distance", a: "angle", p: "plane", t: "trajectory", n: "note" };

const STEPS: Record<Tool, string[]> = {
  select: ["Drag to orbit, right-drag or Shift-drag to pan, wheel to zoom. Pick a tool to annotate."],
  marker: ["Click the surface to place a marker."],
  distance: ["Click the first point.", "Click the second point."],
  angle: ["Click a point on the first arm.", "Click the vertex.", "Click a point on the second arm."],
  plane: ["Press on the surface to place the cutting plane; drag before releasing to tilt it."],
  trajectory: ["Click the entry point.", "Click the target point."],
  note: ["Type the note, then click the surface to pin it (or add it without a point)."],
};
const CLICK_SLOP_PX = 5;
const TILT_RAD_PER_PX = 0.01;

export interface ToolDeps {
  viewport: Viewport;
  create: (kind: AnnotationKind, data: AnnotationData) => void;
  color: () => string;
  canEdit: () => boolean;
  onChange: () => void;
  onHover: (hit: SurfaceHit | null) => void;
  needNoteText: () => void;
  /** A click (not a drag) on the surface while navigating: the CT slices' linked cursor goes there. */
  onNavigateClick: (hit: SurfaceHit) => void;
}

export class ToolController {
  tool: Tool = "select";
  diameterMm = 2.5;
  noteText = "";
  private points: SurfaceHit[] = [];
  private hover: SurfaceHit | null = null;
  private preview = new THREE.Group();
  private down: { x: number; y: number; id: number } | null = null;
  private planeDrag: { hit: SurfaceHit; normal: THREE.Vector3; x: number; y: number } | null = null;
  private lastClient: { x: number; y: number } | null = null;
  private hoverDirty = false;

  constructor(private readonly deps: ToolDeps) {
    const { viewport } = deps;
    viewport.overlay.add(this.preview);
    const el = viewport.container;
    el.addEventListener("pointerdown", this.onDown, { capture: true });
    el.addEventListener("pointermove", this.onMove, { capture: true });
    el.addEventListener("pointerup", this.onUp, { capture: true });
    el.addEventListener("pointerleave", () => {
      this.lastClient = null;
      this.hoverDirty = true;
      viewport.requestRender();
    });
    viewport.onFrame(() => this.updateHover());
    viewport.onViewChange(() => (this.hoverDirty = this.lastClient !== null));
  }

  get step(): number {
    return this.points.length;
  }

  hint(): string {
    const steps = STEPS[this.tool];
    return steps[Math.min(this.points.length, steps.length - 1)];
  }

  setTool(tool: Tool): void {
    if (tool !== "select" && !this.deps.canEdit()) return;
    this.tool = tool;
    this.cancel();
  }

  /** Esc: drop the points collected so far (or leave the tool when none are). */
  cancel(): void {
    this.points = [];
    this.planeDrag = null;
    this.redraw();
    this.deps.onChange();
  }

  /** Add a note without a point (from the tool bar). */
  addNoteWithoutPoint(): void {
    const text = this.noteText.trim();
    if (!text) return this.deps.needNoteText();
    this.deps.create("note", { text });
    this.noteText = "";
    this.deps.onChange();
  }

  // ---- pointer handling -----------------------------------------------------------------------
  private onDown = (ev: PointerEvent): void => {
    if (ev.button !== 0 || !this.isCanvas(ev)) return;
    this.down = { x: ev.clientX, y: ev.clientY, id: ev.pointerId };
    if (this.tool !== "plane") return; // other tools: a click places, a drag orbits
    const hit = this.deps.viewport.pick(ev.clientX, ev.clientY);
    if (!hit) return;
    ev.stopPropagation(); // keep OrbitControls from starting an orbit
    this.deps.viewport.canvas.setPointerCapture(ev.pointerId);
    this.planeDrag = { hit, normal: hit.normal.clone(), x: ev.clientX, y: ev.clientY };
    this.redraw();
  };

  private onMove = (ev: PointerEvent): void => {
    this.lastClient = { x: ev.clientX, y: ev.clientY };
    this.hoverDirty = true;
    this.deps.viewport.requestRender(); // the hover pick runs before the next frame
    const drag = this.planeDrag;
    if (!drag) return;
    ev.stopPropagation();
    const { right, up } = this.deps.viewport.cameraAxes();
    const dx = ev.clientX - drag.x;
    const dy = ev.clientY - drag.y;
    const q = new THREE.Quaternion()
      .setFromAxisAngle(up, dx * TILT_RAD_PER_PX)
      .multiply(new THREE.Quaternion().setFromAxisAngle(right, dy * TILT_RAD_PER_PX));
    drag.normal.copy(drag.hit.normal).applyQuaternion(q).normalize();
    this.redraw();
  };

  private onUp = (ev: PointerEvent): void => {
    const down = this.down;
    this.down = null;
    if (this.planeDrag) {
      ev.stopPropagation();
      const { hit, normal } = this.planeDrag;
      this.planeDrag = null;
      this.deps.viewport.canvas.releasePointerCapture(ev.pointerId);
      this.finish("plane", { point: vec(hit.point), normal: vec(normal), ...modelOf([hit]) });
      return;
    }
    if (!down || down.id !== ev.pointerId) return;
    if (Math.hypot(ev.clientX - down.x, ev.clientY - down.y) > CLICK_SLOP_PX) return; // it was an orbit
    const hit = this.deps.viewport.pick(ev.clientX, ev.clientY);
    if (!hit) return;
    if (this.tool === "select") this.deps.onNavigateClick(hit);
    else this.addPoint(hit);
  };

  private isCanvas(ev: Event): boolean {
    return ev.target === this.deps.viewport.canvas;
  }

  private addPoint(hit: SurfaceHit): void {
    const p = [...this.points, hit];
    const v = (i: number) => vec(p[i].point);
    const model = modelOf(p);
    switch (this.tool) {
      case "marker":
        return this.finish("marker", { point: v(0), ...model });
      case "note": {
        const text = this.noteText.trim();
        if (!text) return this.deps.needNoteText();
        this.noteText = "";
        return this.finish("note", { text, point: v(0), ...model });
      }
      case "distance":
        if (p.length === 2) return this.finish("distance", { a: v(0), b: v(1), ...model });
        break;
      case "angle":
        if (p.length === 3) {
          if (p[0].point.distanceTo(p[1].point) < 1e-6 || p[2].point.distanceTo(p[1].point) < 1e-6) return; // zero-length arm
          return this.finish("angle", { a: v(0), vertex: v(1), b: v(2), ...model });
        }
        break;
      case "trajectory":
        if (p.length === 2) {
          if (p[0].point.distanceTo(p[1].point) < 1e-6) return;
          return this.finish("trajectory", { entry: v(0), target: v(1), diameter_mm: this.diameterMm, ...model });
        }
        break;
      default:
        return;
    }
    this.points = p;
    this.redraw();
    this.deps.onChange();
  }

  private finish(kind: AnnotationKind, data: AnnotationData): void {
    this.points = [];
    this.redraw();
    this.deps.create(kind, data);
    this.deps.onChange();
  }

  // ---- hover and preview ----------------------------------------------------------------------
  /** At most one pick per frame, shared by the preview and the outgoing pointer. */
  private updateHover(): void {
    if (!this.hoverDirty) return;
    this.hoverDirty = false;
    const c = this.lastClient;
    this.hover = c ? this.deps.viewport.pick(c.x, c.y) : null;
    this.deps.onHover(this.hover);
    if (this.tool !== "select") this.redraw();
  }

  private rebuildPreview(): void {
    disposeChildren(this.preview);
    const color = this.deps.color();
    const pts = this.points.map((p) => p.point);
    for (const p of pts) this.preview.add(dot(p, color, 1.6));
    if (this.planeDrag) {
      this.preview.add(planeMesh(this.planeDrag.hit.point, this.planeDrag.normal, color));
      return;
    }
    if (this.tool === "select" || !this.hover) return;
    const h = this.hover.point;
    this.preview.add(dot(h, color, 1.2));
    if (this.tool === "plane") this.preview.add(planeMesh(h, this.hover.normal, color));
    if (pts.length > 0 && (this.tool === "distance" || this.tool === "angle")) this.preview.add(polyline([...pts, h], color));
    if (pts.length === 1 && this.tool === "trajectory") this.preview.add(cylinderBetween(pts[0], h, this.diameterMm, color));
  }

  /** Rebuild the preview and ask for the frame that shows it. */
  private redraw(): void {
    this.rebuildPreview();
    this.deps.viewport.requestRender();
  }
}

function vec(v: THREE.Vector3): Vec3 {
  const r = (x: number) => Math.round(x * 1e4) / 1e4;
  return [r(v.x), r(v.y), r(v.z)];
}

function disposeChildren(group: THREE.Group): void {
  group.traverse((o) => {
    if (o === group) return;
    const mesh = o as THREE.Mesh;
    mesh.geometry?.dispose();
    (mesh.material as THREE.Material | undefined)?.dispose?.();
  });
  group.clear();
}

function modelOf(hits: SurfaceHit[]): { model_id?: string } {
  const id = hits.find((h) => h.modelId)?.modelId;
  return id ? { model_id: id } : {};
}
