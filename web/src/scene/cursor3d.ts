/**
 * The linked cursor of the CT slice viewer in the 3D view: a small cross at an LPS point. It is this
 * user's own (not sent to the room) and drawn over the bone, so it stays visible inside it.
 */
import * as THREE from "three";
import type { Vec3 } from "../protocol";

const ARM_MM = 9;
const COLOR = 0x00e5ff;

export class Cursor3D {
  readonly group = new THREE.Group();
  private point: Vec3 | null = null;

  constructor(
    parent: THREE.Object3D,
    private readonly changed: () => void,
  ) {
    this.group.name = "ct-cursor";
    const material = new THREE.LineBasicMaterial({ color: COLOR, depthTest: false, transparent: true });
    const arms = new THREE.BufferGeometry().setFromPoints(
      [[-1, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0], [0, 0, -1], [0, 0, 1]].map(([x, y, z]) => new THREE.Vector3(x, y, z).multiplyScalar(ARM_MM)),
    );
    const cross = new THREE.LineSegments(arms, material);
    const dot = new THREE.Mesh(new THREE.SphereGeometry(0.6, 12, 8), new THREE.MeshBasicMaterial({ color: COLOR, depthTest: false, transparent: true }));
    cross.renderOrder = dot.renderOrder = 30;
    this.group.add(cross, dot);
    this.group.visible = false;
    parent.add(this.group);
  }

  /** Where the cursor is (LPS mm), or null when hidden. */
  position(): Vec3 | null {
    return this.point;
  }

  set(point: Vec3 | null): void {
    this.point = point;
    this.group.visible = point !== null;
    if (point) this.group.position.set(point[0], point[1], point[2]);
    this.changed();
  }
}
