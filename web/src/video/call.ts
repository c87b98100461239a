/**
 * One participant's call: a single RTCPeerConnection to the server, which makes every offer (we only
 * answer, so two offers never cross). Our camera and microphone go out on the m-lines the offer names
 * in `publish`; every other m-line carries someone else's track, named in `tracks`.
 */
import { Emitter } from "../emitter";
import type { RoomSocket } from "../roomSocket";
import type { RtcFrame, RtcOffer, RtcSession, Source, TrackInfo } from "./frames";

export interface RemoteTrack {
  info: TrackInfo;
  track: MediaStreamTrack;
}

interface CallEvents {
  tracks: RemoteTrack[];
  session: RtcSession;
  local: MediaStream | null;
  state: "idle" | "joining" | "live";
  problem: string;
}

const SEND_RETRY_MS = 50;
const SEND_TRIES = 100;

/** Receive the socket's rtc.* frames. RoomSocket has no event for them yet: this taps its frame handler
 * (see web/src/video/README.md for the one-line `rtc` event that replaces the tap). */
export function onRtcFrames(socket: RoomSocket, fn: (frame: RtcFrame) => void): () => void {
  const target = socket as unknown as { handle: (frame: { type?: unknown }) => void };
  const original = target.handle;
  target.handle = function (this: unknown, frame: { type?: unknown }) {
    if (typeof frame.type === "string" && frame.type.startsWith("rtc.")) fn(frame as RtcFrame);
    else original.call(this, frame);
  };
  return () => {
    target.handle = original;
  };
}

export class VideoCall extends Emitter<CallEvents> {
  pc: RTCPeerConnection | null = null;
  local: MediaStream | null = null;
  screen: MediaStream | null = null;
  session: RtcSession | null = null;
  state: "idle" | "joining" | "live" = "idle";
  readonly flags: Record<Source, boolean> = { audio: true, video: true, screen: false };
  private infos = new Map<string, TrackInfo>(); // mid -> who and what
  private offers: Promise<void> = Promise.resolve();
  private readonly untap: () => void;
  private readonly unsubscribe: Array<() => void> = [];

  constructor(private readonly socket: RoomSocket) {
    super();
    this.untap = onRtcFrames(socket, (frame) => this.onFrame(frame));
    // A new room connection means the server dropped our peer connection with the old one. (The
    // server sends rtc.session to every new connection of a room with a call by itself.)
    this.unsubscribe.push(
      socket.on("joined", () => {
        if (this.state !== "idle") void this.rejoin();
      }),
      socket.on("error", (e) => {
        // rtc frames carry no op_id, so their refusals arrive here.
        if (e.op_id) return;
        if (e.code === "unknown_type" && this.state === "joining") {
          this.setState("idle");
          this.emit("problem", "Video calls are not enabled on this server.");
        } else if (e.code === "room_full" || e.code === "conflict" || e.code === "forbidden") {
          this.emit("problem", e.message);
        }
      }),
    );
  }

  get remoteTracks(): RemoteTrack[] {
    if (!this.pc) return [];
    const out: RemoteTrack[] = [];
    for (const t of this.pc.getTransceivers()) {
      const info = t.mid ? this.infos.get(t.mid) : undefined;
      if (info && t.receiver.track) out.push({ info, track: t.receiver.track });
    }
    return out;
  }

  /** Join with the camera and microphone (or as a viewer when there are none, or none allowed). */
  async join(publish = true): Promise<void> {
    if (this.state !== "idle") return;
    this.setState("joining");
    if (publish && !this.local) {
      try {
        this.local = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480, frameRate: 15 } });
      } catch (err) {
        this.emit("problem", `No camera or microphone: ${(err as Error).message}. Joining to watch and listen.`);
      }
      this.emit("local", this.local);
    }
    await this.send({ type: "rtc.join", publish: { audio: !!this.local, video: !!this.local } });
    // A rejoin (after a reconnect) starts unmuted on the server: say again what is off.
    if (this.local && (!this.flags.audio || !this.flags.video)) await this.send({ type: "rtc.state", audio: this.flags.audio, video: this.flags.video });
  }

  async leave(): Promise<void> {
    if (this.state === "idle") return;
    await this.send({ type: "rtc.leave" });
    this.closePeer();
    for (const stream of [this.local, this.screen]) stream?.getTracks().forEach((t) => t.stop());
    this.local = this.screen = null;
    this.emit("local", null);
    this.setState("idle");
  }

  /** Mute or unmute, camera on or off: the server stops forwarding too, so muted means muted. */
  async setFlag(source: "audio" | "video", on: boolean): Promise<void> {
    this.flags[source] = on;
    this.local?.getTracks().filter((t) => t.kind === source).forEach((t) => (t.enabled = on));
    await this.send({ type: "rtc.state", [source]: on });
  }

  async shareScreen(on: boolean): Promise<void> {
    if (on && !this.screen) {
      this.screen = await navigator.mediaDevices.getDisplayMedia({ video: true });
      this.screen.getVideoTracks()[0]?.addEventListener("ended", () => void this.shareScreen(false));
      await this.send({ type: "rtc.renegotiate", publish: { audio: false, video: false, screen: true } });
    } else if (!on && this.screen) {
      this.screen.getTracks().forEach((t) => t.stop());
      this.screen = null;
    }
    this.flags.screen = on;
    await this.send({ type: "rtc.state", screen: on });
  }

  consent(granted: boolean): Promise<void> {
    return this.send({ type: "rtc.consent", granted });
  }

  record(action: "start" | "stop"): Promise<void> {
    return this.send({ type: "rtc.record", action });
  }

  dispose(): void {
    void this.leave();
    this.untap();
    this.unsubscribe.forEach((off) => off());
  }

  // ---- signaling ----------------------------------------------------------------------------------
  /** rtc frames are ephemeral: the socket drops one it has no token for, so try again shortly. */
  private async send(frame: Record<string, unknown>): Promise<void> {
    for (let i = 0; i < SEND_TRIES; i++) {
      if (this.socket.send(frame)) return;
      await new Promise((r) => setTimeout(r, SEND_RETRY_MS));
    }
    this.emit("problem", `Could not send ${String(frame.type)}: not connected.`);
  }

  private onFrame(frame: RtcFrame): void {
    if (frame.type === "rtc.offer") {
      this.offers = this.offers.then(() => this.answer(frame)).catch((err) => this.emit("problem", `Call setup failed: ${(err as Error).message}`));
    } else if (frame.type === "rtc.session") {
      this.session = frame;
      this.emit("session", frame);
    } else if (frame.type === "rtc.closed") {
      this.closePeer();
      this.setState("idle");
      this.emit("problem", `The call was closed by the server (${frame.reason}).`);
    }
  }

  private async answer(offer: RtcOffer): Promise<void> {
    if (this.state === "idle") return; // left meanwhile
    const pc = (this.pc ??= this.createPeer(offer.ice_servers));
    await pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
    const byMid = new Map(pc.getTransceivers().map((t) => [t.mid, t]));
    const mine: Record<Source, MediaStreamTrack | undefined> = {
      audio: this.local?.getAudioTracks()[0],
      video: this.local?.getVideoTracks()[0],
      screen: this.screen?.getVideoTracks()[0],
    };
    for (const [source, mid] of Object.entries(offer.publish) as [Source, string | null][]) {
      const transceiver = mid ? byMid.get(mid) : undefined;
      const track = mine[source];
      if (!transceiver || !track) continue;
      if (transceiver.sender.track !== track) await transceiver.sender.replaceTrack(track);
      transceiver.direction = "sendonly";
    }
    this.infos = new Map(offer.tracks.map((t) => [t.mid, t]));
    await pc.setLocalDescription(await pc.createAnswer());
    await this.send({ type: "rtc.answer", sdp: pc.localDescription?.sdp ?? "", negotiation: offer.negotiation });
    this.emit("tracks", this.remoteTracks);
  }

  private createPeer(iceServers: RTCIceServer[]): RTCPeerConnection {
    const pc = new RTCPeerConnection({ iceServers, bundlePolicy: "max-bundle" });
    pc.onicecandidate = (e) =>
      void this.send({ type: "rtc.ice", candidate: e.candidate?.candidate ?? "", sdpMid: e.candidate?.sdpMid ?? null, sdpMLineIndex: e.candidate?.sdpMLineIndex ?? null });
    pc.ontrack = () => this.emit("tracks", this.remoteTracks);
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "connected") this.setState("live");
      if (pc.connectionState === "failed") this.emit("problem", "The media connection failed (a firewall? see docs/deploy.md, TURN).");
    };
    return pc;
  }

  private async rejoin(): Promise<void> {
    this.closePeer();
    this.state = "idle";
    await this.join(!!this.local);
  }

  private closePeer(): void {
    this.pc?.close();
    this.pc = null;
    this.infos.clear();
    this.offers = Promise.resolve();
    this.emit("tracks", []);
  }

  private setState(state: "idle" | "joining" | "live"): void {
    this.state = state;
    this.emit("state", state);
  }
}
