/** A maker room's "Printers" tab, wired to the room socket: shown (in front) only when the room is a maker room. */
import type { Room } from "../../api";
import { toast } from "../../dom";
import type { RoomSocket } from "../../roomSocket";
import { FleetPanel } from "./fleetPanel";

export interface FleetMount {
  socket: RoomSocket;
  room: Promise<Room>;
  addTab: (el: HTMLElement) => void;
}

/** Returns the dispose function. */
export function mountFleet({ socket, room, addTab }: FleetMount): () => void {
  let panel: FleetPanel | null = null;
  let disposed = false;
  let joins = 0;
  const load = () => void panel?.load().catch((err: Error) => toast(err.message, "error"));
  room
    .then((info) => {
      if (info.kind !== "maker" || disposed) return;
      panel = new FleetPanel(info.site_id);
      addTab(panel.el);
      load();
    })
    .catch(() => undefined);
  const off = [
    socket.on("printer", (frame) => panel?.onPrinterFrame(frame)),
    socket.on("print_job", (frame) => panel?.onPrintJobFrame(frame)),
    socket.on("joined", () => {
      if (++joins > 1) load(); // printer and print_job frames are not replayed on resume: start again from the snapshot
    }),
  ];
  return () => {
    disposed = true;
    for (const fn of off) fn();
    panel?.dispose();
  };
}
