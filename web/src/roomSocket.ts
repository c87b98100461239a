/**
 * The room WebSocket session (docs/protocol.md), mirroring server/rooms/client.py: hello with the token
 * as the first frame, welcome or resumed, sequenced events, acks by op_id, and after a dropped
 * connection a reconnect that resumes from the last seen (epoch, seq) and re-sends every op that was
 * never acknowledged, with the same op_id (the server de-duplicates). What goes out, and when, is the
 * Outbox's business (outbox.ts): paced under the server's announced limits, nothing before
 * welcome/resumed, unacknowledged ops re-queued in submission order on every join, retransmit after 5 s.
 */
import { Emitter } from "./emitter";
import { randomId } from "./dom";
import { OpRefused, Outbox } from "./outbox";
import { ephemeralIntervals } from "./pacing";
import {
  FATAL_CLOSE_CODES,
  PROTOCOL_VERSION,
  SUBPROTOCOL,
  type CameraFrame,
  type ErrorFrame,
  type EventFrame,
  type JobFrame,
  type Limits,
  type OpFrame,
  type PointerFrame,
  type PresenceFrame,
  type ServerFrame,
} from "./protocol";
import { RoomState } from "./roomState";

export type SocketStatus = "connecting" | "online" | "reconnecting" | "closed";

export { OpRefused };

interface SocketEvents {
  status: SocketStatus;
  joined: "welcome" | "resumed";
  event: EventFrame;
  pointer: PointerFrame;
  camera: CameraFrame;
  presence: PresenceFrame;
  job: JobFrame;
  printer: Record<string, unknown>; // maker rooms: a printer's live state (docs/protocol.md)
  print_job: Record<string, unknown>;
  opError: { error: ErrorFrame; op: OpFrame };
  error: ErrorFrame;
  pending: number;
  fatal: { code: number; reason: string };
}

const PING_EVERY_MS = 5_000;
const DEAD_AFTER_MS = 12_000; // no frame at all (not even a pong) for this long: the link is dead
const JOIN_TIMEOUT_MS = 10_000;
const MAX_BACKOFF_MS = 5_000;

export class RoomSocket extends Emitter<SocketEvents> {
  readonly state = new RoomState();
  epoch: string | null = null;
  status: SocketStatus = "connecting";
  reconnects = 0;
  private ws: WebSocket | null = null;
  private joined = false;
  private closed = false;
  private readonly outbox = new Outbox({
    write: (text) => this.write(text),
    pending: (count) => this.emit("pending", count),
    refused: (error, op) => this.emit("opError", { error, op }),
  });
  private opCounter = 0;
  private readonly opPrefix = randomId(5);
  private backoffMs = 250;
  private retryTimer: number | undefined;
  private pingTimer: number | undefined;
  private joinTimer: number | undefined;
  private lastRx = 0;
  private forceRefresh = false;
  private authRetried = false;
  private readonly onOnline = () => this.reconnectNow();
  private readonly onOffline = () => this.drop("offline");

  constructor(
    readonly roomId: string,
    private readonly getToken: (forceRefresh: boolean) => Promise<string>,
  ) {
    super();
  }

  start(): void {
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
    void this.connect();
  }

  close(): void {
    this.closed = true;
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOffline);
    this.joined = false;
    this.outbox.disconnect();
    this.clearTimers();
    this.detach(1000, "bye");
    this.setStatus("closed");
  }

  get connected(): boolean {
    return this.joined;
  }

  get pendingOps(): number {
    return this.outbox.size;
  }

  /** The server's announced limits (defaults until the first join). */
  get limits(): Limits {
    return this.outbox.limits;
  }

  /** Minimum intervals between pointer frames and between camera frames under the current limits. */
  get intervals(): { pointerMs: number; cameraMs: number } {
    return ephemeralIntervals(this.outbox.limits);
  }

  newOpId(): string {
    return `${this.opPrefix}-${++this.opCounter}`;
  }

  /** Queue a sequenced op; it is (re)sent until acknowledged, across reconnects. Resolves with its seq;
   * rejects with OpRefused when refused (a frame over limits.max_message_bytes: at once, `too_large`). */
  submitOp(kind: string, data: Record<string, unknown> = {}, opId?: string): Promise<number> {
    const frame: OpFrame = { type: "op", op_id: opId ?? this.newOpId(), kind, data };
    if (this.closed) return Promise.reject(new OpRefused({ type: "error", code: "closed", message: "not connected to the room" }));
    return this.outbox.submit(frame);
  }

  /** Ephemeral frames (pointer, camera, presence, ping) go out only while joined and within the rate
   * limit, never queued (a newer one supersedes them anyway). Returns whether the frame was sent. */
  send(frame: Record<string, unknown>): boolean {
    const result = this.outbox.sendEphemeral(frame);
    if (result === true || result === false) return result;
    this.emit("error", result); // too large: refused locally
    return false;
  }

  /** Drop the connection abruptly, as a network failure would, and start reconnecting (also a test hook). */
  drop(reason = "dropped"): void {
    if (this.closed) return;
    const hadSocket = this.ws !== null;
    this.detach(4000, reason);
    this.afterDisconnect(hadSocket ? 1006 : 0);
  }

  // ---- connection lifecycle -------------------------------------------------------------------
  private async connect(): Promise<void> {
    if (this.closed || this.ws) return;
    this.setStatus(this.reconnects === 0 && this.epoch === null ? "connecting" : "reconnecting");
    let token: string;
    try {
      token = await this.getToken(this.forceRefresh);
      this.forceRefresh = false;
    } catch (err) {
      const status = (err as { status?: number }).status;
      if (status === 401) return this.fail(4001, "session expired");
      return this.scheduleReconnect(); // offline: the refresh request itself failed
    }
    if (this.closed || this.ws) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws/rooms/${encodeURIComponent(this.roomId)}`, [SUBPROTOCOL]);
    this.ws = ws;
    this.lastRx = Date.now();
    ws.onopen = () => {
      // batch: the server may put several frames in one message, newline-separated (protocol §1).
      const hello: Record<string, unknown> = { type: "hello", protocol: PROTOCOL_VERSION, token, batch: true };
      if (this.epoch !== null) hello.resume = { epoch: this.epoch, seq: this.state.seq };
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (msg) => {
      if (this.ws !== ws) return;
      this.lastRx = Date.now();
      for (const text of String(msg.data).split("\n")) {
        let frame: ServerFrame;
        try {
          frame = JSON.parse(text) as ServerFrame;
        } catch {
          continue;
        }
        this.handle(frame);
        if (this.ws !== ws) return; // a frame closed this socket (e.g. a fatal error)
      }
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.afterDisconnect(ev.code, ev.reason);
    };
    ws.onerror = () => undefined; // a close event always follows
    this.joinTimer = window.setTimeout(() => {
      if (this.ws === ws && !this.joined) this.drop("join timeout");
    }, JOIN_TIMEOUT_MS);
  }

  private afterDisconnect(code: number, reason = ""): void {
    const wasJoined = this.joined;
    this.joined = false;
    this.outbox.disconnect(); // leftovers of this connection: re-queued, in order, on the next join
    this.clearTimers();
    if (this.closed) return;
    if (code === 4001 && !this.authRetried) {
      // The access token may have expired while we were away: refresh it once and try again.
      this.authRetried = true;
      this.forceRefresh = true;
      this.setStatus("reconnecting");
      this.retryTimer = window.setTimeout(() => void this.connect(), 0);
      return;
    }
    if (FATAL_CLOSE_CODES.has(code)) return this.fail(code, reason);
    if (wasJoined) this.reconnects++;
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed) return;
    this.setStatus("reconnecting");
    const delay = this.backoffMs * (0.75 + Math.random() * 0.5);
    this.backoffMs = Math.min(MAX_BACKOFF_MS, this.backoffMs * 2);
    window.clearTimeout(this.retryTimer);
    this.retryTimer = window.setTimeout(() => void this.connect(), delay);
  }

  private reconnectNow(): void {
    if (this.closed || this.ws) return;
    this.backoffMs = 250;
    window.clearTimeout(this.retryTimer);
    void this.connect();
  }

  private fail(code: number, reason: string): void {
    this.closed = true;
    this.joined = false;
    this.clearTimers();
    this.outbox.failAll(reason || `closed ${code}`);
    this.setStatus("closed");
    this.emit("fatal", { code, reason });
  }

  private detach(code: number, reason: string): void {
    const ws = this.ws;
    this.ws = null;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(code, reason);
    } catch {
      /* already closing */
    }
  }

  private clearTimers(): void {
    window.clearTimeout(this.retryTimer);
    window.clearTimeout(this.joinTimer);
    window.clearInterval(this.pingTimer);
  }

  private setStatus(status: SocketStatus): void {
    if (this.status === status) return;
    this.status = status;
    this.emit("status", status);
  }

  private write(text: string): boolean {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(text);
    return true;
  }

  private onJoined(kind: "welcome" | "resumed", limits: Limits | undefined): void {
    this.joined = true;
    this.authRetried = false;
    this.backoffMs = 250;
    window.clearTimeout(this.joinTimer);
    window.clearInterval(this.pingTimer);
    this.pingTimer = window.setInterval(() => {
      if (Date.now() - this.lastRx > DEAD_AFTER_MS) this.drop("no answer from the server");
      else this.send({ type: "ping", t: Date.now() });
    }, PING_EVERY_MS);
    // Every unacknowledged op is queued again, in submission order, before anything else may go out.
    this.outbox.join(limits);
    this.setStatus("online");
    this.emit("joined", kind);
  }

  // ---- incoming frames ------------------------------------------------------------------------
  private handle(frame: ServerFrame): void {
    const state = this.state;
    switch (frame.type) {
      case "welcome":
        this.epoch = frame.epoch;
        state.room = frame.room;
        state.you = frame.you;
        state.resetFromSnapshot(frame.snapshot);
        this.onJoined("welcome", frame.limits);
        break;
      case "resumed":
        this.epoch = frame.epoch;
        state.room = frame.room;
        state.you = frame.you;
        state.setMembers(frame.members);
        state.setPresence(frame.presence);
        state.camera = frame.camera;
        state.presenter = frame.presenter;
        this.onJoined("resumed", frame.limits);
        break;
      case "event":
        if (frame.seq <= state.seq) return;
        if (frame.seq !== state.seq + 1) {
          console.warn(`gap in room events: at ${state.seq}, got ${frame.seq}; resuming`);
          return this.drop("sequence gap");
        }
        state.apply(frame);
        this.emit("event", frame);
        break;
      case "ack":
        this.outbox.ack(frame.op_id, frame.seq);
        break;
      case "error":
        this.onError(frame);
        break;
      case "pointer":
        this.emit("pointer", frame);
        break;
      case "camera":
        state.camera = frame;
        this.emit("camera", frame);
        break;
      case "presence":
        if (frame.status === "offline") state.presence.delete(frame.user);
        else state.presence.set(frame.user, { user: frame.user, status: frame.status, color: frame.color, name: frame.name });
        this.emit("presence", frame);
        break;
      case "job":
        this.emit("job", frame);
        break;
      default: {
        // Frames of later capabilities this switch does not type: a maker room's printers and print jobs.
        const other = frame as unknown as Record<string, unknown> & { type: string };
        if (other.type === "printer" || other.type === "print_job") this.emit(other.type, other);
        break;
      }
    }
  }

  private onError(frame: ErrorFrame): void {
    if (this.outbox.handleError(frame)) return;
    // Not about one of our ops. A `rate_limited` error names no op_id (the frame was dropped unread): if it
    // was an op, the outbox sends it again once it has waited 5 s without an answer.
    this.emit("error", frame);
  }
}
