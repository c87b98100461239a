/** REST of design operations (server/design/api.py): the operation list, running one from a room, mesh upload. */
import { request, uploadForm, type UploadProgress } from "./api";
import type { JobView } from "./jobs";

export interface OperationInfo {
  name: string;
  summary: string;
  inputs: string[];
  optional_inputs: string[];
  outputs: string[];
}

/** Annotation ids of the room, which the server resolves into the operation's geometry. */
export interface AnnotationRefs {
  plane?: string;
  planes?: string[];
  trajectories?: string[];
  region_marker?: string;
}

export interface DesignRequest {
  inputs: Record<string, string>; // role -> artifact id
  parameters: Record<string, unknown>;
  annotations: AnnotationRefs;
  region_radius_mm?: number;
}

export interface UploadedMesh {
  id: string;
  name: string;
  lineage_id?: string;
  version?: number;
}

const enc = encodeURIComponent;

export const designApi = {
  operations: () => request<OperationInfo[]>("GET", "/api/design/operations"),
  run: (roomId: string, operation: string, body: DesignRequest) => request<JobView>("POST", `/api/rooms/${enc(roomId)}/design/${enc(operation)}`, body),
  uploadMesh: (caseId: string, roomId: string, file: File, onProgress?: UploadProgress) => {
    const form = new FormData();
    form.append("file", file, file.name);
    return uploadForm<UploadedMesh>(`/api/cases/${enc(caseId)}/meshes?room_id=${enc(roomId)}`, form, onProgress);
  },
};
