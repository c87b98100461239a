/**
 * Video consultation in the room page: one call, its tiles and controls, the recording indicator.
 *
 * The room page calls `mountVideo(socket, host)` once its RoomSocket exists, and the returned function
 * when it unmounts (web/src/video/README.md). Everything else about video lives in this folder.
 */
import type { RoomSocket } from "../roomSocket";
import { toast } from "../dom";
import { VideoCall } from "./call";
import { VideoPanel } from "./panel";
import "./video.css";

export function mountVideo(socket: RoomSocket, host: HTMLElement): () => void {
  const call = new VideoCall(socket);
  const panel = new VideoPanel(call, socket);
  host.append(panel.el);
  const offProblem = call.on("problem", (message) => toast(message, "error"));
  (window as unknown as { __trinityVideo?: VideoCall }).__trinityVideo = call; // tests and debugging
  return () => {
    offProblem();
    call.dispose();
    panel.dispose();
    delete (window as unknown as { __trinityVideo?: VideoCall }).__trinityVideo;
  };
}
