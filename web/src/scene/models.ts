/**
 * The room's scene models (snapshot.models / scene.model.* events) as meshes, plus a client-side
 * placeholder bone while no model has geometry, so the tools have a surface to work on.
 *
 * GLB files are expected in patient LPS millimetres, like every coordinate in the protocol.
 */
import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import type { SceneModel } from "../protocol";

type LoadState = "none" | "loading" | "loaded" | "error";

interface Entry {
  group: THREE.Group;
  url: string | null;
  state: LoadState;
  material: THREE.MeshStandardMaterial;
}

export class ModelLayer {
  readonly placeholder: THREE.Mesh;
  private entries = new Map<string, Entry>();
  private loader = new GLTFLoader();
  private framedOnce = false;
  onLoaded: (id: string, state: LoadState) => void = () => undefined;

  constructor(
    private readonly root: THREE.Group,
    private readonly frame: (object: THREE.Object3D) => void,
    private readonly authHeader: () => Promise<string | null>,
  ) {
    this.placeholder = makePlaceholderBone();
    this.root.add(this.placeholder);
  }

  get showingPlaceholder(): boolean {
    return this.placeholder.visible;
  }

  loadState(id: string): LoadState {
    return this.entries.get(id)?.state ?? "none";
  }

  sync(models: Iterable<SceneModel>): void {
    const seen = new Set<string>();
    for (const model of models) {
      seen.add(model.id);
      let entry = this.entries.get(model.id);
      if (!entry) {
        const group = new THREE.Group();
        group.name = model.name;
        group.userData.modelId = model.id;
        const material = new THREE.MeshStandardMaterial({ roughness: 0.65, metalness: 0.05, side: THREE.DoubleSide });
        entry = { group, url: null, state: "none", material };
        this.entries.set(model.id, entry);
        this.root.add(group);
      }
      entry.group.visible = model.visible;
      entry.material.color.set(model.color);
      entry.material.opacity = model.opacity;
      entry.material.transparent = model.opacity < 1;
      entry.material.depthWrite = model.opacity >= 1;
      entry.material.needsUpdate = true;
      const url = model.url ?? null;
      if (url && url !== entry.url) this.load(model.id, entry, url);
    }
    for (const [id, entry] of this.entries) {
      if (!seen.has(id)) {
        this.root.remove(entry.group);
        this.entries.delete(id);
      }
    }
    this.updatePlaceholder();
  }

  private async load(id: string, entry: Entry, url: string): Promise<void> {
    entry.url = url;
    entry.state = "loading";
    this.onLoaded(id, entry.state);
    const sameOrigin = new URL(url, location.href).origin === location.origin;
    const auth = sameOrigin ? await this.authHeader() : null;
    this.loader.setRequestHeader(auth ? { Authorization: auth } : {});
    try {
      const gltf = await this.loader.loadAsync(url);
      if (entry.url !== url) return; // replaced meanwhile
      entry.group.clear();
      gltf.scene.traverse((o) => {
        if ((o as THREE.Mesh).isMesh) (o as THREE.Mesh).material = entry.material;
      });
      entry.group.add(gltf.scene);
      entry.state = "loaded";
      this.updatePlaceholder();
      if (!this.framedOnce) {
        this.framedOnce = true;
        this.frame(this.root);
      }
    } catch (err) {
      console.error(`could not load model ${id} from ${url}`, err);
      entry.state = "error";
    }
    this.onLoaded(id, entry.state);
  }

  private updatePlaceholder(): void {
    const anyGeometry = [...this.entries.values()].some((e) => e.state === "loaded");
    this.placeholder.visible = !anyGeometry;
  }
}

/** A long bone (~125 mm, femur-like) along +Z, made by revolving a profile: wide ends, narrow shaft. */
function makePlaceholderBone(): THREE.Mesh {
  const profile: Array<[number, number]> = [
    [0, -62], [9, -61.5], [15, -59], [18.5, -54], [18, -48], [14.5, -42], [10.5, -35], [8.6, -25],
    [8, -10], [8.2, 5], [8.8, 20], [10.5, 32], [14, 40], [17.5, 47], [18.5, 53], [16, 58.5], [10, 61.5], [0, 62.5],
  ];
  const curve = new THREE.SplineCurve(profile.map(([r, y]) => new THREE.Vector2(r, y)));
  const points = curve.getSpacedPoints(80).map((p) => new THREE.Vector2(Math.max(0, p.x), p.y));
  points[0].x = 0;
  points[points.length - 1].x = 0;
  const geometry = new THREE.LatheGeometry(points, 64);
  geometry.rotateX(Math.PI / 2); // lathe axis +Y -> +Z (superior)
  const material = new THREE.MeshStandardMaterial({ color: 0xe8dcc8, roughness: 0.7, metalness: 0.02 });
  const mesh = new THREE.Mesh(geometry, material);
  mesh.name = "placeholder";
  return mesh;
}
