/**
 * REST of a case's imaging (server/imaging/api.py): uploads, ingest reports, series, volumes, slices, models,
 * the PACS (query, pull) and label maps made elsewhere.
 */
import { request, uploadForm, type UploadProgress } from "./api";
import type { JobView } from "./jobs";
import type { Vec3 } from "./protocol";

export type PlaneName = "axial" | "coronal" | "sagittal";
export const PLANES: readonly PlaneName[] = ["axial", "coronal", "sagittal"];

export interface VolumeSummary {
  artifact_id: string;
  size: Vec3;
  spacing_mm: Vec3;
  notes?: string[];
  slice_count?: number;
  tilt_deg?: number;
}

export interface Series {
  id: string;
  series_uid: string;
  modality: string;
  description: string;
  number: number | null;
  instances: number;
  volume: VolumeSummary | null;
}

export type IngestStatus = "accepted" | "duplicate" | "rejected" | "volume_refused";

export interface IngestFile {
  name: string;
  status: IngestStatus;
  code?: string;
  message?: string;
}

export interface IngestReport {
  id: string;
  accepted: number;
  rejected: number;
  files: IngestFile[];
  source?: string;
  created_at_ms?: number;
}

/** How one plane's images are cut from the voxel grid and drawn (server/imaging/slices.py SliceLayout). */
export interface PlaneLayout {
  axis: number; // the voxel axis the plane fixes; slice indices run along it
  col_axis: number;
  col_flip: boolean;
  row_axis: number;
  row_flip: boolean;
  count: number;
  width_px: number;
  height_px: number;
  pixel_mm: number;
}

export interface VolumeLayout {
  artifact_id: string;
  size: Vec3;
  spacing_mm: Vec3;
  origin_lps: Vec3;
  direction: number[]; // row-major 3x3; its columns are the voxel axes in LPS
  notes?: string[];
  planes: Record<PlaneName, PlaneLayout>;
}

export interface LocatedInPlane {
  index: number;
  col_px: number;
  row_px: number;
  inside: boolean;
  distance_mm: number;
}

export type Preset = "bone" | "compact_bone" | "spongial_bone" | "soft_tissue" | "muscle" | "fat" | "custom";
export const PRESETS: readonly Preset[] = ["bone", "compact_bone", "spongial_bone", "soft_tissue", "muscle", "fat", "custom"];

export interface ModelRequest {
  name: string;
  preset: Preset;
  hu_min?: number;
  hu_max?: number;
  target_faces?: number;
  keep: "largest" | "all" | "seed";
  seed_lps?: Vec3;
  room_id: string;
}

export interface UploadAccepted {
  upload_id: string;
  files: number;
  job: JobView;
}

/** What the PACS answers for one study (QIDO-RS, by DICOM keyword; a multi-valued field is a list). */
export type PacsStudy = Record<string, string | number | string[] | number[] | null | undefined>;

/** Fields of a PACS search; an empty one is left out (no patient ID: the case's own patient). */
export interface PacsQuery {
  patient_id?: string;
  accession_number?: string;
  study_date?: string; // YYYYMMDD or a range YYYYMMDD-YYYYMMDD
  modalities?: string;
}

export interface LabelMapOptions {
  name: string;
  label: number | null; // null: every nonzero voxel
  targetFaces: number | null; // null: the server's default
}

const enc = encodeURIComponent;
const base = (caseId: string) => `/api/cases/${enc(caseId)}/imaging`;
const seriesPath = (caseId: string, seriesId: string) => `${base(caseId)}/series/${enc(seriesId)}`;

export const imagingApi = {
  caseLabel: (caseId: string) => request<{ id: string; label: string; site_id: string }>("GET", `/api/cases/${enc(caseId)}`),
  upload: (caseId: string, roomId: string, files: File[], onProgress?: UploadProgress) => {
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name);
    return uploadForm<UploadAccepted>(`${base(caseId)}/uploads?room_id=${enc(roomId)}`, form, onProgress);
  },
  reports: (caseId: string) => request<IngestReport[]>("GET", `${base(caseId)}/reports`),
  series: (caseId: string) => request<Series[]>("GET", `${base(caseId)}/series`),
  volume: (caseId: string, seriesId: string) => request<VolumeLayout>("GET", `${seriesPath(caseId, seriesId)}/volume`),
  locate: (caseId: string, seriesId: string, p: Vec3) =>
    request<Record<PlaneName, LocatedInPlane>>("GET", `${seriesPath(caseId, seriesId)}/volume/locate?point=${p.map((v) => v.toFixed(3)).join(",")}`),
  buildModel: (caseId: string, seriesId: string, body: ModelRequest) => request<JobView>("POST", `${seriesPath(caseId, seriesId)}/models`, body),
  pacsQuery: (caseId: string, query: PacsQuery) => request<PacsStudy[]>("POST", `${base(caseId)}/pacs/query`, query),
  pacsPull: (caseId: string, roomId: string, studyUid: string) =>
    request<JobView>("POST", `${base(caseId)}/pacs/pull`, { study_uid: studyUid, room_id: roomId }),
  /** One NRRD or NIfTI label map (3D Slicer's export) into a model of the room, built by a job. */
  uploadLabelMap: (caseId: string, roomId: string, file: File, options: LabelMapOptions, onProgress?: UploadProgress) => {
    const form = new FormData();
    form.append("file", file, file.name);
    const query = new URLSearchParams({ room_id: roomId, name: options.name });
    if (options.label !== null) query.set("label", String(options.label));
    if (options.targetFaces !== null) query.set("target_faces", String(options.targetFaces));
    return uploadForm<JobView>(`${base(caseId)}/labelmaps?${query}`, form, onProgress);
  },
  /** `window`: bone | soft_tissue | lung | "<width>,<level>" in HU. */
  sliceUrl: (caseId: string, seriesId: string, plane: PlaneName, index: number, window: string) =>
    `${seriesPath(caseId, seriesId)}/slices/${plane}/${index}.png?window=${enc(window)}`,
};
