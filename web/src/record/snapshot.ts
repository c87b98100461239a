/**
 * Snapshot capture: the 3D view's canvas (or a slice view's) as a PNG posted to the room's record with
 * the camera and the visible model versions. The renderer must keep its drawing buffer
 * (`preserveDrawingBuffer: true`) or call this right after a render, or the PNG comes out blank.
 */
import { request } from "../api";

export interface SnapshotView {
  kind: "view3d" | "slice";
  label?: string;
  camera?: { position: number[]; target: number[]; up?: number[]; fov_deg?: number };
  visibleModels?: Array<{ id: string; version?: number }>;
  slice?: Record<string, unknown>; // e.g. { series_id, orientation, index, window }
}

export interface SnapshotRecord {
  id: string;
  url: string;
  width: number;
  height: number;
}

const MAX_DATA_URL_CHARS = 1_300_000; // the server's default request limit is 1 MiB of JSON

/** Entry: capture `canvas` and attach it to the room's record. */
export async function captureSnapshot(roomId: string, canvas: HTMLCanvasElement, view: SnapshotView): Promise<SnapshotRecord> {
  let source: HTMLCanvasElement = canvas;
  let image = source.toDataURL("image/png");
  // A large screen can exceed the request limit: halve the resolution until it fits.
  while (image.length > MAX_DATA_URL_CHARS && source.width > 320) {
    const smaller = document.createElement("canvas");
    smaller.width = Math.round(source.width / 2);
    smaller.height = Math.round(source.height / 2);
    smaller.getContext("2d")!.drawImage(source, 0, 0, smaller.width, smaller.height);
    source = smaller;
    image = source.toDataURL("image/png");
  }
  return request<SnapshotRecord>("POST", `/api/rooms/${encodeURIComponent(roomId)}/snapshots`, {
    image,
    kind: view.kind,
    label: view.label ?? "",
    camera: view.camera ?? null,
    visible_models: view.visibleModels ?? [],
    slice: view.slice ?? null,
  });
}
