/** What the room's panels share: the live socket and state, and a few UI-level actions. */
import { toast } from "../dom";
import type { RoomSocket } from "../roomSocket";
import { OpRefused } from "../roomSocket";
import type { RoomState } from "../roomState";

export interface RoomContext {
  socket: RoomSocket;
  state: RoomState;
  selected: string | null;
  select(id: string | null): void;
  /** Submit a sequenced op; refusals are reported to the user. Resolves with the seq, or null if refused. */
  op(kind: string, data?: Record<string, unknown>): Promise<number | null>;
}

const FRIENDLY: Record<string, string> = {
  nothing_to_undo: "Nothing to undo or redo.",
  stale_version: "Someone else changed this annotation meanwhile; the list now shows their version. Try again.",
  forbidden: "You are not allowed to do that in this room.",
  room_archived: "This room is archived and read-only.",
  presenter_taken: "Someone else is presenting; ask them to hand over.",
  not_presenter: "You are not the presenter.",
};

export function makeOp(socket: RoomSocket): RoomContext["op"] {
  return async (kind, data = {}) => {
    try {
      return await socket.submitOp(kind, data);
    } catch (err) {
      if (err instanceof OpRefused) {
        const code = err.frame.code;
        const local = code === "too_large" && err.frame.details?.local === true; // refused before sending: says why
        toast(local ? err.frame.message : (FRIENDLY[code] ?? `${code}: ${err.frame.message}`), "error");
        return null;
      }
      throw err;
    }
  };
}
