/**
 * Presenter mode on the client: the presenter streams its camera (throttled to the server's announced
 * camera_max_hz, within the socket's rate budget; latest wins), followers glide to the presenter's
 * camera unless they chose to browse freely. A pose the socket had to drop (no token free) is sent
 * again once the interval has passed, so followers always end up at the final view.
 */
import type { CameraPose } from "./protocol";
import type { RoomSocket } from "./roomSocket";
import type { Viewport } from "./scene/viewport";

export class CameraSync {
  browseFreely = false;
  private lastSent = 0;
  private trailing: number | undefined;
  private lastKey = "";
  onFollowChange: () => void = () => undefined;

  constructor(
    private readonly socket: RoomSocket,
    private readonly viewport: Viewport,
  ) {
    viewport.onViewChange(() => this.viewChanged());
    socket.on("camera", (frame) => {
      if (this.following) this.viewport.glideTo(frame);
    });
  }

  get following(): boolean {
    const s = this.socket.state;
    return s.presenter !== null && !s.amPresenter && !this.browseFreely;
  }

  setBrowseFreely(on: boolean): void {
    this.browseFreely = on;
    this.update(false);
  }

  /** After a join or a presenter change: (re)apply follow mode. `jump` skips the glide (fresh join). */
  update(jump: boolean): void {
    const following = this.following;
    this.viewport.controls.enabled = !following;
    this.viewport.following = following;
    const cam = this.socket.state.camera;
    if (following && cam) {
      if (jump) this.viewport.setPose(cam);
      else this.viewport.glideTo(cam);
    }
    if (this.socket.state.amPresenter) this.sendNow();
    this.onFollowChange();
  }

  private viewChanged(): void {
    if (!this.socket.state.amPresenter || !this.socket.connected) return;
    const wait = this.lastSent + this.socket.intervals.cameraMs - performance.now();
    if (wait <= 0 && this.trailing === undefined) return this.sendNow();
    this.sendLater(wait);
  }

  private sendLater(wait: number): void {
    if (this.trailing !== undefined) return;
    this.trailing = window.setTimeout(() => {
      this.trailing = undefined;
      this.sendNow();
    }, Math.max(0, wait));
  }

  private sendNow(): void {
    if (!this.socket.state.amPresenter || !this.socket.connected) return;
    const pose: CameraPose = this.viewport.pose();
    const key = JSON.stringify(pose);
    if (key === this.lastKey && performance.now() - this.lastSent < 1000) return;
    if (this.socket.send({ type: "camera", ...pose })) {
      this.lastKey = key;
      this.lastSent = performance.now();
    } else {
      this.sendLater(this.socket.intervals.cameraMs); // dropped for want of a token: try the latest pose again
    }
  }
}
