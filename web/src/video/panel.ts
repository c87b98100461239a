/** The call's controls and tiles, and the recording indicator and consent every participant sees. */
import { h } from "../dom";
import type { RoomSocket } from "../roomSocket";
import type { RemoteTrack, VideoCall } from "./call";
import type { RtcSession } from "./frames";

export class VideoPanel {
  readonly el: HTMLElement;
  private readonly tiles = h("div", { class: "video-tiles", testid: "video-tiles" });
  private readonly audio = h("div", { hidden: true });
  private readonly controls = h("div", { class: "video-controls" });
  private readonly recording = h("div", { class: "video-recording", testid: "recording-panel" });
  private readonly indicator = h("div", { class: "recording-indicator", testid: "recording-indicator", role: "status", hidden: true });
  private readonly localVideo = h("video", { class: "video-local", testid: "video-local", muted: true, autoplay: true, playsInline: true });
  private readonly elements = new Map<string, HTMLVideoElement | HTMLAudioElement>(); // by mid

  constructor(
    private readonly call: VideoCall,
    private readonly socket: RoomSocket,
  ) {
    this.el = h("section", { class: "video-dock", testid: "video-dock" }, this.indicator, this.controls, this.tiles, this.recording, this.audio);
    call.on("state", () => this.renderControls());
    call.on("local", (stream) => this.renderLocal(stream));
    call.on("tracks", (tracks) => this.renderTracks(tracks));
    call.on("session", (session) => this.renderSession(session));
    this.renderControls();
  }

  private get me(): string | undefined {
    return this.socket.state.you?.user;
  }

  private renderControls(): void {
    const call = this.call;
    const observer = this.socket.state.you?.role === "observer";
    if (call.state === "idle") {
      this.controls.replaceChildren(
        h("button", { class: "btn small primary", testid: "video-join", onclick: () => void call.join(!observer) }, observer ? "Watch the call" : "Join call"),
      );
      return;
    }
    const toggle = (source: "audio" | "video", on: string, off: string) =>
      h(
        "button",
        {
          class: `btn small${call.flags[source] ? "" : " active"}`,
          testid: `video-${source === "audio" ? "mic" : "camera"}`,
          "aria-pressed": String(!call.flags[source]),
          onclick: () => void call.setFlag(source, !call.flags[source]).then(() => this.renderControls()),
        },
        call.flags[source] ? on : off,
      );
    this.controls.replaceChildren(
      ...(call.local ? [toggle("audio", "Mute", "Unmute"), toggle("video", "Camera off", "Camera on")] : []),
      ...(call.local && "getDisplayMedia" in navigator.mediaDevices
        ? [h("button", { class: `btn small${call.flags.screen ? " active" : ""}`, testid: "video-screen", onclick: () => void call.shareScreen(!call.flags.screen).then(() => this.renderControls()) }, call.flags.screen ? "Stop sharing" : "Share screen")]
        : []),
      h("button", { class: "btn small", testid: "video-leave", onclick: () => void call.leave() }, "Leave call"),
      h("span", { class: "video-state muted", testid: "video-state", "data-state": call.state }, call.state === "live" ? "connected" : "connecting…"),
    );
  }

  private renderLocal(stream: MediaStream | null): void {
    this.localVideo.srcObject = stream;
    if (stream && !this.localVideo.isConnected) this.tiles.prepend(this.tile(this.localVideo, "You"));
    if (!stream) this.localVideo.parentElement?.remove();
  }

  private renderTracks(tracks: RemoteTrack[]): void {
    const wanted = new Set(tracks.map((t) => t.info.mid));
    for (const [mid, el] of this.elements) {
      if (!wanted.has(mid)) {
        el.srcObject = null;
        (el.parentElement?.classList.contains("video-tile") ? el.parentElement : el).remove();
        this.elements.delete(mid);
      }
    }
    for (const { info, track } of tracks) {
      let el = this.elements.get(info.mid);
      if (!el) {
        if (track.kind === "audio") {
          el = h("audio", { autoplay: true, testid: "audio-remote" });
          this.audio.append(el);
        } else {
          el = h("video", { class: "video-remote", testid: "video-remote", muted: true, autoplay: true, playsInline: true });
          this.tiles.append(this.tile(el, ""));
        }
        this.elements.set(info.mid, el);
      }
      const stream = el.srcObject as MediaStream | null;
      if (!stream || stream.getTracks()[0] !== track) el.srcObject = new MediaStream([track]);
      el.dataset.user = info.user ?? "";
      el.dataset.source = info.source;
      const label = el.parentElement?.querySelector(".video-name");
      if (label) label.textContent = info.source === "screen" ? `${info.name} (screen)` : info.name;
    }
  }

  private tile(media: HTMLMediaElement, name: string): HTMLElement {
    return h("figure", { class: "video-tile" }, media, h("figcaption", { class: "video-name" }, name));
  }

  private renderSession(session: RtcSession): void {
    const rec = session.recording;
    const name = (user: string) => this.socket.state.members.get(user)?.name ?? user;
    this.indicator.hidden = !rec.active;
    this.indicator.textContent = rec.active ? `● Recording${rec.by ? ` (started by ${name(rec.by)})` : ""}` : "";
    const me = this.me;
    const agreed = !!me && rec.consents.includes(me);
    const owner = this.socket.state.you?.role === "owner";
    this.recording.replaceChildren(
      h(
        "label",
        { class: "video-consent" },
        h("input", { type: "checkbox", testid: "recording-consent", checked: agreed, onchange: (e: Event) => void this.call.consent((e.target as HTMLInputElement).checked) }),
        " I agree to this call being recorded",
      ),
      h(
        "div",
        { class: "muted", testid: "recording-consents" },
        `Agreed: ${rec.consents.map(name).join(", ") || "nobody yet"}`,
        rec.missing.length ? ` · waiting for ${rec.missing.map(name).join(", ")}` : "",
      ),
      ...(owner
        ? [
            rec.active
              ? h("button", { class: "btn small active", testid: "recording-stop", onclick: () => void this.call.record("stop") }, "Stop recording")
              : h("button", { class: "btn small", testid: "recording-start", disabled: rec.missing.length > 0, title: rec.missing.length ? "Everyone present must agree first" : "", onclick: () => void this.call.record("start") }, "Start recording"),
          ]
        : []),
    );
  }

  dispose(): void {
    for (const el of this.elements.values()) el.srcObject = null;
    this.localVideo.srcObject = null;
    this.el.remove();
  }
}
