/** Annotations drawn in the 3D scene, rebuilt per annotation only when its version changes. */
import * as THREE from "three";
import { CSS2DObject } from "three/addons/renderers/CSS2DRenderer.js";
import { titleOf, valueText } from "../format";
import type { Annotation, Vec3 } from "../protocol";

const PLANE_SIZE_MM = 90;
const POINT_RADIUS_MM = 1.8;

interface Drawn {
  version: number;
  color: string;
  object: THREE.Group;
}

export class AnnotationLayer {
  private drawn = new Map<string, Drawn>();
  private selected: string | null = null;
  readonly group = new THREE.Group();

  constructor(parent: THREE.Object3D) {
    this.group.name = "annotations";
    parent.add(this.group);
  }

  sync(annotations: Map<string, Annotation>, colorOf: (a: Annotation) => string): void {
    for (const [id, d] of this.drawn) {
      if (!annotations.has(id)) this.remove(id, d);
    }
    for (const a of annotations.values()) {
      const color = colorOf(a);
      const existing = this.drawn.get(a.id);
      if (existing && existing.version === a.version && existing.color === color) continue;
      if (existing) this.remove(a.id, existing);
      const object = build(a, color);
      object.userData.annotationId = a.id;
      this.group.add(object);
      this.drawn.set(a.id, { version: a.version, color, object });
    }
    this.applySelection();
  }

  select(id: string | null): void {
    this.selected = id;
    this.applySelection();
  }

  private applySelection(): void {
    for (const [id, d] of this.drawn) {
      const on = id === this.selected;
      d.object.traverse((o) => {
        if (o instanceof CSS2DObject) o.element.classList.toggle("selected", on);
        const mat = (o as THREE.Mesh).material as THREE.MeshBasicMaterial | undefined;
        if (mat && "userData" in mat && mat.userData.baseOpacity !== undefined) {
          mat.opacity = on ? Math.min(1, mat.userData.baseOpacity + 0.3) : mat.userData.baseOpacity;
        }
        if (o.userData.isDot) o.scale.setScalar(on ? 1.7 : 1);
      });
    }
  }

  private remove(id: string, d: Drawn): void {
    this.group.remove(d.object);
    d.object.traverse((o) => {
      if (o instanceof CSS2DObject) o.element.remove();
      const mesh = o as THREE.Mesh;
      mesh.geometry?.dispose();
      const mat = mesh.material as THREE.Material | undefined;
      mat?.dispose();
    });
    this.drawn.delete(id);
  }
}

// ---- builders, shared with the tools' previews ---------------------------------------------------

/** Overlay materials ignore depth so measurements stay visible through the bone. */
export function dot(at: THREE.Vector3 | Vec3, color: string, radius = POINT_RADIUS_MM): THREE.Mesh {
  const mesh = new THREE.Mesh(new THREE.SphereGeometry(radius, 16, 12), overlayMaterial(color));
  mesh.position.copy(toV(at));
  mesh.renderOrder = 10;
  mesh.userData.isDot = true;
  return mesh;
}

export function polyline(points: Array<THREE.Vector3 | Vec3>, color: string): THREE.Line {
  const geometry = new THREE.BufferGeometry().setFromPoints(points.map(toV));
  const line = new THREE.Line(geometry, new THREE.LineBasicMaterial({ color, depthTest: false, transparent: true }));
  line.renderOrder = 10;
  return line;
}

export function label(text: string, at: THREE.Vector3 | Vec3, color: string, className = "ann-label"): CSS2DObject {
  const el = document.createElement("div");
  el.className = className;
  el.textContent = text;
  el.style.borderColor = color;
  const obj = new CSS2DObject(el);
  obj.position.copy(toV(at));
  return obj;
}

export function planeMesh(point: THREE.Vector3 | Vec3, normal: THREE.Vector3 | Vec3, color: string): THREE.Group {
  const group = new THREE.Group();
  const n = toV(normal).normalize();
  const mat = new THREE.MeshBasicMaterial({ color, transparent: true, opacity: 0.28, side: THREE.DoubleSide, depthWrite: false });
  mat.userData.baseOpacity = 0.28;
  const quad = new THREE.Mesh(new THREE.PlaneGeometry(PLANE_SIZE_MM, PLANE_SIZE_MM), mat);
  quad.quaternion.setFromUnitVectors(new THREE.Vector3(0, 0, 1), n);
  const edges = new THREE.LineSegments(new THREE.EdgesGeometry(quad.geometry), new THREE.LineBasicMaterial({ color }));
  edges.quaternion.copy(quad.quaternion);
  const arrow = new THREE.ArrowHelper(n, new THREE.Vector3(), 25, new THREE.Color(color).getHex(), 6, 4);
  group.add(quad, edges, arrow);
  group.position.copy(toV(point));
  return group;
}

export function cylinderBetween(a: THREE.Vector3 | Vec3, b: THREE.Vector3 | Vec3, diameter: number, color: string): THREE.Mesh {
  const va = toV(a);
  const vb = toV(b);
  const length = Math.max(va.distanceTo(vb), 1e-3);
  const mat = new THREE.MeshBasicMaterial({ color, transparent: true, opacity: 0.55, depthWrite: false });
  mat.userData.baseOpacity = 0.55;
  const mesh = new THREE.Mesh(new THREE.CylinderGeometry(diameter / 2, diameter / 2, length, 24, 1), mat);
  mesh.position.copy(va).add(vb).multiplyScalar(0.5);
  mesh.quaternion.setFromUnitVectors(new THREE.Vector3(0, 1, 0), vb.clone().sub(va).normalize());
  return mesh;
}

function build(a: Annotation, color: string): THREE.Group {
  const g = new THREE.Group();
  const d = a.data;
  const name = titleOf(a);
  const value = valueText(a);
  const measured = a.label?.trim() ? `${a.label.trim()}: ${value}` : value;
  switch (a.kind) {
    case "marker":
      if (d.point) g.add(dot(d.point, color, 2.4), label(name, d.point, color));
      break;
    case "distance":
      if (d.a && d.b) {
        const mid = toV(d.a).add(toV(d.b)).multiplyScalar(0.5);
        g.add(dot(d.a, color), dot(d.b, color), polyline([d.a, d.b], color), label(measured, mid, color));
      }
      break;
    case "angle":
      if (d.a && d.vertex && d.b) g.add(dot(d.a, color), dot(d.vertex, color), dot(d.b, color), polyline([d.a, d.vertex, d.b], color), label(measured, d.vertex, color));
      break;
    case "plane":
      if (d.point && d.normal) g.add(planeMesh(d.point, d.normal, color), label(name, d.point, color));
      break;
    case "trajectory":
      if (d.entry && d.target) {
        g.add(cylinderBetween(d.entry, d.target, d.diameter_mm ?? 2, color), dot(d.entry, color), dot(d.target, color, 1.2));
        g.add(polyline([d.entry, d.target], color), label(`${name}: ${value}`, d.entry, color));
      }
      break;
    case "note":
      if (d.point) g.add(dot(d.point, color, 1.6), label(truncate(d.text ?? "", 60), d.point, color, "ann-label note"));
      break;
  }
  return g;
}

function toV(p: THREE.Vector3 | Vec3): THREE.Vector3 {
  return Array.isArray(p) ? new THREE.Vector3(p[0], p[1], p[2]) : p.clone();
}

function overlayMaterial(color: string): THREE.MeshBasicMaterial {
  return new THREE.MeshBasicMaterial({ color, depthTest: false, transparent: true });
}

function truncate(text: string, n: number): string {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}
