/** Other participants' pointers: a small sphere in the user's colour with their name. */
import * as THREE from "three";
import { CSS2DObject } from "three/addons/renderers/CSS2DRenderer.js";
import type { Vec3 } from "../protocol";

const FADE_AFTER_MS = 15_000; // a pointer nobody moved for this long is hidden (the user walked away)

interface RemotePointer {
  group: THREE.Group;
  fadeTimer: number;
}

export class PointerLayer {
  private pointers = new Map<string, RemotePointer>();
  readonly group = new THREE.Group();

  /** `changed` asks the viewport for a frame (it draws on demand). */
  constructor(
    parent: THREE.Object3D,
    private readonly changed: () => void,
  ) {
    this.group.name = "pointers";
    parent.add(this.group);
  }

  /** `point` null means the user's pointer left the model. */
  set(user: string, color: string, name: string, point: Vec3 | null | undefined): void {
    let p = this.pointers.get(user);
    if (!point) {
      if (p) p.group.visible = false;
      this.changed();
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
      p = { group, fadeTimer: 0 };
      this.pointers.set(user, p);
    }
    p.group.position.set(point[0], point[1], point[2]);
    p.group.visible = true;
    const shown = p;
    window.clearTimeout(shown.fadeTimer);
    shown.fadeTimer = window.setTimeout(() => {
      shown.group.visible = false;
      this.changed();
    }, FADE_AFTER_MS);
    this.changed();
  }

  remove(user: string): void {
    const p = this.pointers.get(user);
    if (!p) return;
    window.clearTimeout(p.fadeTimer);
    p.group.traverse((o) => {
      if (o instanceof CSS2DObject) o.element.remove();
    });
    this.group.remove(p.group);
    this.pointers.delete(user);
    this.changed();
  }

  dispose(): void {
    for (const p of this.pointers.values()) window.clearTimeout(p.fadeTimer);
  }

  visibleUsers(): string[] {
    return [...this.pointers.entries()].filter(([, p]) => p.group.visible).map(([u]) => u);
  }
}
