/**
 * Flow control for the room socket (docs/protocol.md §5), as in server/rooms/client.py: the server
 * announces its `limits` in welcome/resumed and refuses, unread, any frame beyond `rate_per_s` (burst
 * `burst`). The client paces every frame it sends through a token bucket at 0.8 × rate_per_s with half
 * the burst, and refuses frames over `max_message_bytes` itself.
 */
import type { Limits } from "./protocol";

/** What the server enforces by default; used until the first welcome/resumed announces the real limits. */
export const DEFAULT_LIMITS: Limits = {
  rate_per_s: 60,
  burst: 120,
  max_message_bytes: 65536,
  pointer_max_hz: 20,
  camera_max_hz: 30,
};

const RATE_SHARE = 0.8; // of the server's rate: stay under it so a burst of re-sent ops is paced, not refused
const EPHEMERAL_SHARE = 0.9; // of the client's own budget at most for pointer + camera together

export class TokenBucket {
  private tokens: number;
  private stamp = performance.now();

  constructor(
    readonly ratePerS: number,
    readonly capacity: number,
  ) {
    this.tokens = capacity;
  }

  /** The bucket the client uses under the server's announced limits. */
  static forLimits(limits: Limits): TokenBucket {
    return new TokenBucket(Math.max(0.1, limits.rate_per_s * RATE_SHARE), Math.max(1, Math.floor(limits.burst / 2)));
  }

  private refill(): void {
    const now = performance.now();
    this.tokens = Math.min(this.capacity, this.tokens + ((now - this.stamp) / 1000) * this.ratePerS);
    this.stamp = now;
  }

  take(): boolean {
    this.refill();
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }

  /** Milliseconds until the next token (0 if one is available now). */
  waitMs(): number {
    this.refill();
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) / this.ratePerS) * 1000);
  }
}

/** Minimum interval between pointer frames and between camera frames: at most the announced Hz, and
 * together within the client's budget so that ops, pings and presence still find tokens. */
export function ephemeralIntervals(limits: Limits): { pointerMs: number; cameraMs: number } {
  const pointerHz = Math.max(0.1, limits.pointer_max_hz);
  const cameraHz = Math.max(0.1, limits.camera_max_hz);
  const budget = limits.rate_per_s * RATE_SHARE * EPHEMERAL_SHARE;
  const scale = Math.min(1, budget / (pointerHz + cameraHz));
  return { pointerMs: Math.ceil(1000 / (pointerHz * scale)), cameraMs: Math.ceil(1000 / (cameraHz * scale)) };
}

const encoder = new TextEncoder();

/** Size of a frame on the wire (UTF-8 bytes). */
export function frameBytes(text: string): number {
  return encoder.encode(text).length;
}

export function tooLargeMessage(bytes: number, limit: number): string {
  const kb = (n: number) => `${(n / 1024).toFixed(n < 10 * 1024 ? 1 : 0)} kB`;
  return `This change is too large to send (${kb(bytes)}; the room accepts at most ${kb(limit)} per message). Nothing was sent.`;
}
