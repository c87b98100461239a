/** Wire types of the room WebSocket protocol v1 (docs/protocol.md). */

export const PROTOCOL_VERSION = 1;
export const SUBPROTOCOL = "trinity.v1";

export type Vec3 = [number, number, number];

export type AnnotationKind = "marker" | "distance" | "angle" | "plane" | "trajectory" | "note";

export interface AnnotationData {
  point?: Vec3;
  a?: Vec3;
  b?: Vec3;
  vertex?: Vec3;
  normal?: Vec3;
  entry?: Vec3;
  target?: Vec3;
  diameter_mm?: number;
  text?: string;
  model_id?: string;
  value_mm?: number;
  value_deg?: number;
  length_mm?: number;
}

export interface Annotation {
  id: string;
  kind: AnnotationKind;
  data: AnnotationData;
  label?: string;
  color?: string;
  version: number;
  author?: string;
  updated_by?: string;
  deleted?: boolean;
}

/** One stored version of a scene model's lineage (the CT bone, then its cut, its repair…). */
export interface ModelVersion {
  version: number;
  url?: string | null;
  artifact_id?: string | null;
}

export interface SceneModel {
  id: string;
  name: string;
  url?: string | null;
  artifact_id?: string | null;
  version?: number;
  versions?: ModelVersion[];
  visible: boolean;
  opacity: number;
  color: string;
}

export interface ChatMessage {
  seq: number;
  user: string;
  text: string;
  ts?: number | null;
}

export interface MemberInfo {
  user: string;
  name: string;
  site: string;
  role: string;
  color: string;
}

export interface PresenceInfo {
  user: string;
  status: string;
  color: string;
  name: string;
}

export interface CameraPose {
  user?: string;
  position: Vec3;
  target: Vec3;
  up: Vec3;
  fov_deg: number;
}

export interface You {
  user: string;
  role: "owner" | "participant" | "observer";
  color: string;
  conn: number;
}

export interface RoomInfo {
  id: string;
  kind: string;
  title: string;
  case_id: string | null;
  site: string;
}

export interface Snapshot {
  seq: number;
  archived: boolean;
  annotations: Annotation[];
  models: SceneModel[];
  presenter: string | null;
  chat: ChatMessage[];
  members: MemberInfo[];
  presence: PresenceInfo[];
  camera: CameraPose | null;
}

/** Announced by the server in welcome/resumed (docs/protocol.md §1, §5). */
export interface Limits {
  rate_per_s: number;
  burst: number;
  max_message_bytes: number;
  pointer_max_hz: number;
  camera_max_hz: number;
}

export interface WelcomeFrame {
  type: "welcome";
  protocol: number;
  epoch: string;
  seq: number;
  room: RoomInfo;
  you: You;
  limits?: Limits;
  snapshot: Snapshot;
}

export interface ResumedFrame {
  type: "resumed";
  epoch: string;
  from_seq: number;
  seq: number;
  room: RoomInfo;
  you: You;
  limits?: Limits;
  members: MemberInfo[];
  presence: PresenceInfo[];
  camera: CameraPose | null;
  presenter: string | null;
}

export interface EventFrame {
  type: "event";
  seq: number;
  kind: string;
  user: string;
  op_id: string | null;
  ts: number;
  data: Record<string, unknown>;
}

export interface AckFrame {
  type: "ack";
  op_id: string;
  seq: number;
  duplicate?: boolean;
}

export interface ErrorFrame {
  type: "error";
  code: string;
  message: string;
  op_id?: string;
  details?: { current?: Annotation | null } & Record<string, unknown>;
}

export interface PointerFrame {
  type: "pointer";
  user: string;
  color: string;
  point?: Vec3 | null;
  ray?: { origin: Vec3; direction: Vec3 };
  model_id?: string;
}

export interface CameraFrame extends CameraPose {
  type: "camera";
  user: string;
}

export interface PresenceFrame extends PresenceInfo {
  type: "presence";
}

export type JobState = "queued" | "running" | "succeeded" | "failed" | "cancelled";

/** A job of this room changed state or progressed (docs/protocol.md §6); never stored in the room log. */
export interface JobFrame {
  type: "job";
  id: string;
  kind: string;
  state: JobState;
  progress: number;
  message: string;
  error: string | null;
  result: Record<string, unknown> | null;
}

export type ServerFrame =
  | WelcomeFrame
  | ResumedFrame
  | EventFrame
  | AckFrame
  | ErrorFrame
  | PointerFrame
  | CameraFrame
  | PresenceFrame
  | JobFrame
  | { type: "pong"; t: unknown };

export interface OpFrame {
  type: "op";
  op_id: string;
  kind: string;
  data: Record<string, unknown>;
}

/** Close codes after which reconnecting cannot help (4001 is retried once with a refreshed token). */
export const FATAL_CLOSE_CODES = new Set([4001, 4003, 4004, 4009, 4010, 4012]);

export const CLOSE_REASONS: Record<number, string> = {
  4001: "Your session has expired. Please log in again.",
  4003: "You were removed from this room.",
  4004: "This room does not exist or you are not a member.",
  4009: "The room is full.",
  4010: "Protocol error: please reload the page.",
  4012: "The server did not receive the handshake in time.",
};
