/**
 * The room WebSocket session (docs/protocol.md), mirroring server/rooms/client.py: hello with the token
 * as the first frame, welcome or resumed, sequenced events, acks by op_id, and after a dropped
 * connection a reconnect that resumes from the last seen (epoch, seq) and re-sends every op that was
 * never acknowledged, with the same op_id (the server de-duplicates).
 */
import { Emitter } from "./emitter";
import { randomId } from "./dom";
import {
  FATAL_CLOSE_CODES,
  PROTOCOL_VERSION,
  SUBPROTOCOL,
  type CameraFrame,
  type ErrorFrame,
  type EventFrame,
  type OpFrame,
  type PointerFrame,
  type PresenceFrame,
  type ServerFrame,
} from "./protocol";
import { RoomState } from "./roomState";

export type SocketStatus = "connecting" | "online" | "reconnecting" | "closed";

export class OpRefused extends Error {
  constructor(readonly frame: ErrorFrame) {
    super(frame.message);
  }
}

interface SocketEvents {
  status: SocketStatus;
  joined: "welcome" | "resumed";
  event: EventFrame;
  pointer: PointerFrame;
  camera: CameraFrame;
  presence: PresenceFrame;
  opError: { error: ErrorFrame; op: OpFrame };
  error: ErrorFrame;
  pending: number;
  fatal: { code: number; reason: string };
}

interface Pending {
  frame: OpFrame;
  resolve: (seq: number) => void;
  reject: (err: Error) => void;
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
  private unacked = new Map<string, Pending>(); // insertion order is send order
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
    this.clearTimers();
    this.detach(1000, "bye");
    this.setStatus("closed");
  }

  get connected(): boolean {
    return this.joined;
  }

  get pendingOps(): number {
    return this.unacked.size;
  }

  newOpId(): string {
    return `${this.opPrefix}-${++this.opCounter}`;
  }

  /** Queue a sequenced op; it is (re)sent until acknowledged, across reconnects. Resolves with its seq. */
  submitOp(kind: string, data: Record<string, unknown> = {}, opId?: string): Promise<number> {
    const frame: OpFrame = { type: "op", op_id: opId ?? this.newOpId(), kind, data };
    if (this.closed) return Promise.reject(new OpRefused({ type: "error", code: "closed", message: "not connected to the room" }));
    return new Promise<number>((resolve, reject) => {
      this.unacked.set(frame.op_id, { frame, resolve, reject });
      this.emit("pending", this.unacked.size);
      if (this.joined) this.sendRaw(frame);
    });
  }

  /** Ephemeral frames (pointer, camera, presence) are sent only while connected, never queued. */
  send(frame: Record<string, unknown>): void {
    if (this.joined) this.sendRaw(frame);
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
      const hello: Record<string, unknown> = { type: "hello", protocol: PROTOCOL_VERSION, token };
      if (this.epoch !== null) hello.resume = { epoch: this.epoch, seq: this.state.seq };
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (msg) => {
      if (this.ws !== ws) return;
      this.lastRx = Date.now();
      let frame: ServerFrame;
      try {
        frame = JSON.parse(String(msg.data)) as ServerFrame;
      } catch {
        return;
      }
      this.handle(frame);
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
    this.clearTimers();
    for (const pending of this.unacked.values()) {
      pending.reject(new OpRefused({ type: "error", code: "closed", message: reason || `closed ${code}` }));
    }
    this.unacked.clear();
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

  private sendRaw(frame: object): void {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  private onJoined(kind: "welcome" | "resumed"): void {
    this.joined = true;
    this.authRetried = false;
    this.backoffMs = 250;
    window.clearTimeout(this.joinTimer);
    window.clearInterval(this.pingTimer);
    this.pingTimer = window.setInterval(() => {
      if (Date.now() - this.lastRx > DEAD_AFTER_MS) this.drop("no answer from the server");
      else this.sendRaw({ type: "ping", t: Date.now() });
    }, PING_EVERY_MS);
    this.setStatus("online");
    this.emit("joined", kind);
    for (const pending of this.unacked.values()) this.sendRaw(pending.frame);
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
        this.onJoined("welcome");
        break;
      case "resumed":
        this.epoch = frame.epoch;
        state.room = frame.room;
        state.you = frame.you;
        state.setMembers(frame.members);
        state.setPresence(frame.presence);
        state.camera = frame.camera;
        state.presenter = frame.presenter;
        this.onJoined("resumed");
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
      case "ack": {
        const pending = this.unacked.get(frame.op_id);
        if (pending) {
          this.unacked.delete(frame.op_id);
          pending.resolve(frame.seq);
          this.emit("pending", this.unacked.size);
        }
        break;
      }
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
      default:
        break;
    }
  }

  private onError(frame: ErrorFrame): void {
    const pending = frame.op_id ? this.unacked.get(frame.op_id) : undefined;
    if (pending && frame.code === "internal") {
      // Not stored on the server: retry with the same op_id.
      window.setTimeout(() => this.joined && this.sendRaw(pending.frame), 500);
      return;
    }
    if (pending) {
      this.unacked.delete(pending.frame.op_id);
      pending.reject(new OpRefused(frame));
      this.emit("pending", this.unacked.size);
      this.emit("opError", { error: frame, op: pending.frame });
      return;
    }
    if (frame.code === "rate_limited" && this.unacked.size > 0) {
      // The dropped frame may have been one of our ops; re-sending is safe (duplicates are acked, not applied).
      window.setTimeout(() => {
        if (this.joined) for (const p of this.unacked.values()) this.sendRaw(p.frame);
      }, 1000);
    }
    this.emit("error", frame);
  }
}
