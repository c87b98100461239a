/**
 * The sending side of the room socket (docs/protocol.md §5), as in server/rooms/client.py:
 *
 * - every frame is paced by a token bucket under the server's announced `limits` (pacing.ts): ops wait
 *   in the outbox for a token, ephemeral frames (pointer, camera, presence, ping) are dropped when
 *   there is none (or while ops are waiting);
 * - nothing is sent on a connection before its welcome/resumed; `join()` then discards whatever was
 *   queued and queues every unacknowledged op again in submission order, so a leftover later op cannot
 *   overtake an earlier one that was lost with the old connection;
 * - an op that got neither an ack nor an error within 5 s while connected is queued again (the server
 *   de-duplicates by op_id): that is how an op refused unread with `rate_limited` gets through;
 * - a frame over `max_message_bytes` is refused locally (`too_large`) instead of being sent.
 */
import { DEFAULT_LIMITS, TokenBucket, frameBytes, tooLargeMessage } from "./pacing";
import type { ErrorFrame, Limits, OpFrame } from "./protocol";

export class OpRefused extends Error {
  constructor(readonly frame: ErrorFrame) {
    super(frame.message);
  }
}

interface Pending {
  frame: OpFrame;
  text: string; // serialised once: every re-send is byte-identical
  sentAt: number | null; // when it last went out on this connection (null: not in flight)
  resolve: (seq: number) => void;
  reject: (err: Error) => void;
}

export interface OutboxHooks {
  /** Put text on the wire; false if the socket is not open. */
  write(text: string): boolean;
  /** The number of unacknowledged ops changed. */
  pending(count: number): void;
  /** An op was refused (by the server or locally). */
  refused(error: ErrorFrame, op: OpFrame): void;
}

const RETRANSMIT_AFTER_MS = 5_000;
const RETRANSMIT_CHECK_MS = 1_000;
const INTERNAL_RETRY_MS = 500;

export class Outbox {
  /** The server's announced limits (defaults until the first join). */
  limits: Limits = { ...DEFAULT_LIMITS };
  private bucket = TokenBucket.forLimits(DEFAULT_LIMITS);
  private joined = false;
  private readonly unacked = new Map<string, Pending>(); // insertion order is submission order
  private queue: string[] = []; // op_ids waiting for a token on this connection, in order
  private readonly queued = new Set<string>();
  private pumpTimer: number | undefined;
  private retransmitTimer: number | undefined;

  constructor(private readonly hooks: OutboxHooks) {}

  get size(): number {
    return this.unacked.size;
  }

  /** Keep an op until it is acknowledged or refused; sent now if joined and a token is free. */
  submit(frame: OpFrame): Promise<number> {
    const text = JSON.stringify(frame);
    const tooLarge = this.tooLarge(text, frame.op_id);
    if (tooLarge) return Promise.reject(new OpRefused(tooLarge));
    return new Promise<number>((resolve, reject) => {
      this.unacked.set(frame.op_id, { frame, text, sentAt: null, resolve, reject });
      this.hooks.pending(this.unacked.size);
      if (this.joined) this.enqueue(frame.op_id);
    });
  }

  /** An ephemeral frame: sent only if joined, no op is waiting and a token is free; never queued.
   * Returns true if it went out, false if dropped, or the local error if it is too large. */
  sendEphemeral(frame: Record<string, unknown>): true | false | ErrorFrame {
    if (!this.joined || this.queue.length > 0) return false;
    const text = JSON.stringify(frame);
    const tooLarge = this.tooLarge(text);
    if (tooLarge) return tooLarge;
    return this.bucket.take() && this.hooks.write(text);
  }

  /** welcome/resumed arrived: adopt the limits, then queue every unacknowledged op in order. */
  join(limits: Partial<Limits> | undefined): void {
    this.limits = { ...DEFAULT_LIMITS, ...(limits ?? {}) };
    this.bucket = TokenBucket.forLimits(this.limits);
    this.dropQueued();
    this.joined = true;
    window.clearInterval(this.retransmitTimer);
    this.retransmitTimer = window.setInterval(() => this.retransmit(), RETRANSMIT_CHECK_MS);
    for (const [opId, pending] of this.unacked) {
      pending.sentAt = null;
      this.enqueue(opId);
    }
  }

  /** The connection is gone: nothing more goes out, and what was queued for it is discarded. */
  disconnect(): void {
    this.joined = false;
    window.clearInterval(this.retransmitTimer);
    this.dropQueued();
  }

  ack(opId: string, seq: number): void {
    const pending = this.unacked.get(opId);
    if (!pending) return;
    this.unacked.delete(opId); // a queued copy is skipped by pump()
    pending.resolve(seq);
    this.hooks.pending(this.unacked.size);
  }

  /** An error frame naming one of our ops: handled here (true), or not ours (false). */
  handleError(frame: ErrorFrame): boolean {
    const pending = frame.op_id ? this.unacked.get(frame.op_id) : undefined;
    if (!pending) return false;
    if (frame.code === "internal") {
      // Not stored on the server: retry with the same op_id (a reconnect meanwhile re-queues it anyway).
      pending.sentAt = null;
      window.setTimeout(() => this.joined && this.enqueue(pending.frame.op_id), INTERNAL_RETRY_MS);
    } else {
      this.settle(pending.frame.op_id, frame);
    }
    return true;
  }

  /** The session ended for good: refuse every op still waiting. */
  failAll(message: string): void {
    this.disconnect();
    const all = [...this.unacked.values()];
    this.unacked.clear();
    for (const pending of all) pending.reject(new OpRefused({ type: "error", code: "closed", message }));
    this.hooks.pending(0);
  }

  // ---- internals ------------------------------------------------------------------------------------
  private tooLarge(text: string, opId?: string): ErrorFrame | null {
    const bytes = frameBytes(text);
    const limit = this.limits.max_message_bytes;
    if (bytes <= limit) return null;
    const error: ErrorFrame = { type: "error", code: "too_large", message: tooLargeMessage(bytes, limit), details: { bytes, limit, local: true } };
    if (opId) error.op_id = opId;
    return error;
  }

  private settle(opId: string, error: ErrorFrame): void {
    const pending = this.unacked.get(opId);
    if (!pending) return;
    this.unacked.delete(opId);
    pending.reject(new OpRefused(error));
    this.hooks.pending(this.unacked.size);
    this.hooks.refused(error, pending.frame);
  }

  private enqueue(opId: string): void {
    if (this.queued.has(opId) || !this.unacked.has(opId)) return;
    this.queued.add(opId);
    this.queue.push(opId);
    this.pump();
  }

  private dropQueued(): void {
    this.queue = [];
    this.queued.clear();
    window.clearTimeout(this.pumpTimer);
    this.pumpTimer = undefined;
  }

  /** Send queued ops in order as fast as the bucket allows, then wait for the next token. */
  private pump(): void {
    if (this.pumpTimer !== undefined) return; // already waiting for a token
    while (this.joined && this.queue.length > 0) {
      const opId = this.queue[0];
      const pending = this.unacked.get(opId);
      if (pending) {
        const tooLarge = this.tooLarge(pending.text, opId); // the limits may have shrunk since it was submitted
        if (tooLarge) this.settle(opId, tooLarge);
        else if (!this.bucket.take()) {
          this.pumpTimer = window.setTimeout(() => {
            this.pumpTimer = undefined;
            this.pump();
          }, Math.max(this.bucket.waitMs(), 2));
          return;
        } else if (this.hooks.write(pending.text)) pending.sentAt = performance.now();
      }
      this.queue.shift();
      this.queued.delete(opId);
    }
  }

  /** Queue again ops sent on this connection that got neither an ack nor an error in time (e.g. a
   * frame the server refused before it could read its op_id). The server de-duplicates by op_id. */
  private retransmit(): void {
    if (!this.joined || this.queue.length > 0) return;
    const now = performance.now();
    for (const [opId, pending] of this.unacked) {
      if (pending.sentAt !== null && now - pending.sentAt > RETRANSMIT_AFTER_MS) {
        pending.sentAt = null;
        this.enqueue(opId);
      }
    }
  }
}
