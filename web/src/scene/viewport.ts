/**
 * The 3D viewport: renderer, camera, orbit controls, lights, label renderer and surface picking.
 *
 * World coordinates are the protocol's patient LPS millimetres as they are (+Z superior, so the camera's
 * up is +Z); nothing is converted on the way to or from the wire.
 *
 * Rendering is on demand: a frame is drawn only after something asked for one (`requestRender`: the
 * camera moved, a model loaded, an annotation or pointer changed, the size changed). A frame keeps asking
 * for the next one only while something animates (orbit damping, gliding to the presenter's camera), so
 * an idle room costs no GPU or CPU time; a continuous loop cost about a core in headless browsers.
 */
import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { CSS2DRenderer } from "three/addons/renderers/CSS2DRenderer.js";
import type { CameraPose, Vec3 } from "../protocol";

export interface SurfaceHit {
  point: THREE.Vector3;
  normal: THREE.Vector3; // world space, facing the camera
  modelId?: string; // undefined on the placeholder
}

const DEFAULT_POSE: CameraPose = { position: [0, -320, 140], target: [0, 0, 0], up: [0, 0, 1], fov_deg: 45 };
const FOLLOW_RATE = 8; // 1/s: the follower closes ~99.97% of the gap to the presenter in one second

export class Viewport {
  readonly scene = new THREE.Scene();
  readonly camera: THREE.PerspectiveCamera;
  readonly controls: OrbitControls;
  readonly pickables = new THREE.Group(); // models and the placeholder: what tools and pointers hit
  readonly overlay = new THREE.Group(); // annotations, pointers, previews
  readonly canvas: HTMLCanvasElement;
  readonly webgl: boolean;
  private renderer: THREE.WebGLRenderer | null = null;
  private labels: CSS2DRenderer;
  private raycaster = new THREE.Raycaster();
  private goal: { position: THREE.Vector3; target: THREE.Vector3; fov: number } | null = null;
  private frame = 0; // pending requestAnimationFrame id, 0 when none
  private lastFrameAt = 0;
  private disposed = false;
  /** Frames drawn so far (tests read it to check that an idle view draws nothing). */
  frames = 0;
  private resizeObserver: ResizeObserver;
  private changeListeners: Array<() => void> = [];
  private beforeRender: Array<(dt: number) => void> = [];
  following = false;

  constructor(readonly container: HTMLElement) {
    this.camera = new THREE.PerspectiveCamera(45, 1, 0.5, 20000);
    this.camera.up.set(0, 0, 1); // before OrbitControls: it derives its orbit axis from camera.up once
    this.scene.background = new THREE.Color(0x1b2430);
    try {
      this.renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: false });
      this.renderer.setPixelRatio(Math.min(window.devicePixelRatio, 2));
      this.canvas = this.renderer.domElement;
    } catch (err) {
      console.error("WebGL unavailable", err);
      this.canvas = document.createElement("canvas");
      container.classList.add("no-webgl");
    }
    this.webgl = this.renderer !== null;
    this.canvas.dataset.testid = "viewport-canvas";
    this.canvas.tabIndex = 0;
    container.appendChild(this.canvas);
    this.labels = new CSS2DRenderer();
    this.labels.domElement.className = "label-layer";
    container.appendChild(this.labels.domElement);

    this.controls = new OrbitControls(this.camera, this.canvas);
    this.controls.enableDamping = true;
    this.controls.dampingFactor = 0.12;
    this.controls.screenSpacePanning = true;
    this.controls.addEventListener("change", () => {
      this.requestRender(); // user input calls controls.update(), which reports the move here
      for (const fn of this.changeListeners) fn();
    });
    this.setPose(DEFAULT_POSE);

    // Lights ride with the camera (key from the upper left, fill from the right), so whatever side the
    // user orbits to is lit and shaded the same way.
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0x3a4656, 0.9));
    const key = new THREE.DirectionalLight(0xffffff, 2.2);
    key.position.set(-1, 1.2, 1);
    const fill = new THREE.DirectionalLight(0xdde8ff, 0.6);
    fill.position.set(1.2, -0.3, 0.6);
    for (const light of [key, fill]) {
      light.target.position.set(0, 0, -1);
      this.camera.add(light, light.target);
    }
    this.scene.add(this.camera, this.pickables, this.overlay);

    this.resizeObserver = new ResizeObserver(() => this.resize());
    this.resizeObserver.observe(container);
    this.resize();
  }

  dispose(): void {
    this.disposed = true; // late model loads and timers may still ask for frames
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.resizeObserver.disconnect();
    this.controls.dispose();
    this.renderer?.dispose();
    this.container.replaceChildren();
  }

  /** Called whenever the view changes (user orbit, damping, programmatic moves). */
  onViewChange(fn: () => void): void {
    this.changeListeners.push(fn);
  }

  /** Runs before each drawn frame (frames are drawn on demand, so this is not a clock). */
  onFrame(fn: (dt: number) => void): void {
    this.beforeRender.push(fn);
  }

  /** Draw a frame soon (once, however often it is asked before the frame). */
  requestRender(): void {
    if (this.frame === 0 && !this.disposed) this.frame = requestAnimationFrame(this.renderFrame);
  }

  /** Draw a frame now, so the canvas holds a picture (a snapshot reads it right after). */
  renderNow(): void {
    if (this.renderer && !this.disposed) this.renderer.render(this.scene, this.camera);
  }

  pose(): CameraPose {
    const up = this.camera.up;
    return {
      position: round3(this.camera.position),
      target: round3(this.controls.target),
      up: [up.x, up.y, up.z],
      fov_deg: this.camera.fov,
    };
  }

  setPose(pose: CameraPose): void {
    this.goal = null;
    this.camera.position.set(...pose.position);
    this.controls.target.set(...pose.target);
    this.camera.fov = pose.fov_deg;
    this.camera.updateProjectionMatrix();
    this.controls.update();
    this.requestRender();
  }

  /** Move smoothly towards a pose (following the presenter). */
  glideTo(pose: CameraPose): void {
    this.goal = { position: new THREE.Vector3(...pose.position), target: new THREE.Vector3(...pose.target), fov: pose.fov_deg };
    this.requestRender();
  }

  /** Frame an object so it fills most of the view, keeping the current viewing direction. */
  frameObject(object: THREE.Object3D): void {
    const box = visibleBox(object); // not the hidden placeholder bone, which sits elsewhere
    if (box.isEmpty()) return;
    const sphere = box.getBoundingSphere(new THREE.Sphere());
    const dir = this.camera.position.clone().sub(this.controls.target).normalize();
    const dist = (sphere.radius / Math.sin(THREE.MathUtils.degToRad(this.camera.fov / 2))) * 1.15;
    this.controls.target.copy(sphere.center);
    this.camera.position.copy(sphere.center).addScaledVector(dir, dist);
    this.controls.update();
    this.requestRender();
  }

  /** Pick the model surface under a client (screen) position. */
  pick(clientX: number, clientY: number): SurfaceHit | null {
    const rect = this.canvas.getBoundingClientRect();
    if (rect.width === 0 || rect.height === 0) return null;
    const ndc = new THREE.Vector2(((clientX - rect.left) / rect.width) * 2 - 1, -((clientY - rect.top) / rect.height) * 2 + 1);
    // World matrices are otherwise brought up to date only when a frame is drawn, which may not have
    // happened yet since a model was added or the camera moved.
    this.scene.updateMatrixWorld();
    this.raycaster.setFromCamera(ndc, this.camera);
    const hits = this.raycaster.intersectObject(this.pickables, true);
    const hit = hits.find((h) => isVisible(h.object));
    if (!hit) return null;
    const normal = hit.face ? hit.face.normal.clone().transformDirection(hit.object.matrixWorld) : this.raycaster.ray.direction.clone().negate();
    if (normal.dot(this.raycaster.ray.direction) > 0) normal.negate();
    return { point: hit.point.clone(), normal, modelId: modelIdOf(hit.object) };
  }

  /** Screen-space vectors of the camera, for gestures that rotate things in the view plane. */
  cameraAxes(): { right: THREE.Vector3; up: THREE.Vector3 } {
    const right = new THREE.Vector3().setFromMatrixColumn(this.camera.matrixWorld, 0);
    const up = new THREE.Vector3().setFromMatrixColumn(this.camera.matrixWorld, 1);
    return { right, up };
  }

  private resize(): void {
    const { clientWidth: w, clientHeight: h } = this.container;
    if (w === 0 || h === 0) return;
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
    this.renderer?.setSize(w, h);
    this.labels.setSize(w, h);
    this.requestRender();
  }

  private renderFrame = (now: number): void => {
    this.frame = 0;
    // The first frame after a pause animates as one 60 Hz step, not as the whole pause.
    const dt = this.lastFrameAt && now - this.lastFrameAt < 100 ? (now - this.lastFrameAt) / 1000 : 1 / 60;
    this.lastFrameAt = now;
    if (this.goal) this.stepTowardsGoal(dt);
    const moved = this.controls.update(); // true while damping still moves the camera
    for (const fn of this.beforeRender) fn(dt);
    this.renderer?.render(this.scene, this.camera);
    this.labels.render(this.scene, this.camera);
    this.frames++;
    if (moved || this.goal) this.requestRender();
  };

  private stepTowardsGoal(dt: number): void {
    const goal = this.goal!;
    const alpha = 1 - Math.exp(-FOLLOW_RATE * dt);
    this.camera.position.lerp(goal.position, alpha);
    this.controls.target.lerp(goal.target, alpha);
    this.camera.fov += (goal.fov - this.camera.fov) * alpha;
    this.camera.updateProjectionMatrix();
    if (this.camera.position.distanceTo(goal.position) < 0.01 && this.controls.target.distanceTo(goal.target) < 0.01) {
      this.camera.position.copy(goal.position);
      this.controls.target.copy(goal.target);
      this.camera.fov = goal.fov;
      this.camera.updateProjectionMatrix();
      this.goal = null;
    }
  }
}

function round3(v: THREE.Vector3): Vec3 {
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return [r(v.x), r(v.y), r(v.z)];
}

/** The bounding box of the visible meshes under `object` (Box3.setFromObject counts hidden ones too). */
function visibleBox(object: THREE.Object3D): THREE.Box3 {
  const box = new THREE.Box3();
  object.updateWorldMatrix(true, true);
  object.traverseVisible((o) => {
    if ((o as THREE.Mesh).isMesh) box.expandByObject(o, false);
  });
  return box;
}

function isVisible(object: THREE.Object3D): boolean {
  for (let o: THREE.Object3D | null = object; o; o = o.parent) if (!o.visible) return false;
  return true;
}

function modelIdOf(object: THREE.Object3D): string | undefined {
  for (let o: THREE.Object3D | null = object; o; o = o.parent) {
    if (typeof o.userData.modelId === "string") return o.userData.modelId;
  }
  return undefined;
}
