/** Other participants' pointers: a small sphere in the user's colour with their name. */
import * as THREE from "three";
import { CSS2DObject } from "three/addons/renderers/CSS2DRenderer.js";
import type { Vec3 } from "../protocol";

const FADE_AFTER_MS = 15_000; // a pointer nobody moved for this long is hidden (the user walked away)

interface RemotePointer {
  group: THREE.Group;
  lastMs: number;
}

export class PointerLayer {
  private pointers = new Map<string, RemotePointer>();
  readonly group = new THREE.Group();

  constructor(parent: THREE.Object3D) {
    this.group.name = "pointers";
    parent.add(this.group);
  }

  /** `point` null means the user's pointer left the model. */
  set(user: string, color: string, name: string, point: Vec3 | null | undefined): void {
    let p = this.pointers.get(user);
    if (!point) {
      if (p) p.group.visible = false;
      return;
    }
    if (!p) {
      const group = new THREE.Group();
      const mesh = new THREE.Mesh(new THREE.SphereGeometry(2.2, 16, 12), new THREE.MeshBasicMaterial({ color, depthTest: false, transparent: true, opacity: 0.9 }));
      mesh.renderOrder = 20;
      const el = document.createElement("div");
      el.className = "pointer-label";
      el.textContent = name;
      el.style.background = color;
      const tag = new CSS2DObject(el);
      tag.position.set(0, 0, 5);
      group.add(mesh, tag);
      group.userData.user = user;
      this.group.add(group);
      p = { group, lastMs: 0 };
      this.pointers.set(user, p);
    }
    p.group.position.set(point[0], point[1], point[2]);
    p.group.visible = true;
    p.lastMs = performance.now();
  }

  remove(user: string): void {
    const p = this.pointers.get(user);
    if (!p) return;
    p.group.traverse((o) => {
      if (o instanceof CSS2DObject) o.element.remove();
    });
    this.group.remove(p.group);
    this.pointers.delete(user);
  }

  /** Called every frame. */
  tick(): void {
    const now = performance.now();
    for (const p of this.pointers.values()) {
      if (p.group.visible && now - p.lastMs > FADE_AFTER_MS) p.group.visible = false;
    }
  }

  visibleUsers(): string[] {
    return [...this.pointers.entries()].filter(([, p]) => p.group.visible).map(([u]) => u);
  }
}
