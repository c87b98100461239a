/** Video signaling frames on the room WebSocket (docs/protocol.md, "Video (v1 additive)"). */

export type Source = "audio" | "video" | "screen";

export interface TrackInfo {
  mid: string;
  kind: "audio" | "video";
  user: string | null; // null for a printer camera
  conn: number | null;
  name: string;
  source: Source | "printer";
  camera?: string;
}

export interface RtcOffer {
  type: "rtc.offer";
  sdp: string;
  negotiation: number;
  publish: Partial<Record<Source, string | null>>;
  tracks: TrackInfo[];
  ice_servers: RTCIceServer[];
}

export interface Publisher {
  user: string;
  conn: number;
  name: string;
  audio: boolean;
  video: boolean;
  screen: boolean;
}

export interface RecordingInfo {
  active: boolean;
  by: string | null;
  since_ms: number | null;
  consents: string[];
  required: string[];
  missing: string[];
  last_artifact_id: string | null;
}

export interface RtcSession {
  type: "rtc.session";
  room: string;
  publishers: Publisher[];
  viewers: number[];
  cameras: { id: string; name: string }[];
  recording: RecordingInfo;
  limits: { max_publishers: number };
}

export interface RtcClosed {
  type: "rtc.closed";
  reason: string;
}

export type RtcFrame = RtcOffer | RtcSession | RtcClosed;
