/** Presenter controls: take / release / take over, and "browse freely" for followers. */
import type { CameraSync } from "../cameraSync";
import { clear, h } from "../dom";
import type { RoomContext } from "./context";

export class PresenterControls {
  readonly el: HTMLElement;
  private button: HTMLButtonElement;
  private status: HTMLElement;
  private browse: HTMLInputElement;
  private browseLabel: HTMLElement;

  constructor(
    private readonly ctx: RoomContext,
    private readonly sync: CameraSync,
  ) {
    this.button = h("button", { class: "btn", testid: "presenter-button", onclick: () => this.onClick() });
    this.status = h("span", { class: "presenter-status", testid: "presenter-status" });
    this.browse = h("input", { type: "checkbox", testid: "browse-freely" });
    this.browse.addEventListener("change", () => sync.setBrowseFreely(this.browse.checked));
    this.browseLabel = h("label", { class: "browse-toggle", title: "Look around on your own instead of following the presenter" }, this.browse, " Browse freely");
    this.el = h("div", { class: "presenter-controls" }, this.status, this.button, this.browseLabel);
  }

  render(): void {
    const { state } = this.ctx;
    const presenter = state.presenter;
    const me = state.you?.user;
    const observer = state.you?.role === "observer";
    this.button.disabled = observer || state.archived;
    this.button.classList.toggle("primary", presenter === null);
    this.button.classList.toggle("active", presenter === me && presenter !== null);
    if (presenter === null) {
      this.button.textContent = "Present";
      this.button.title = "Everyone's view follows yours";
    } else if (presenter === me) {
      this.button.textContent = "Stop presenting";
      this.button.title = "Release the presenter role";
    } else {
      this.button.textContent = state.you?.role === "owner" ? "Take over" : "Ask to present";
      this.button.title = state.you?.role === "owner" ? "As the room's owner you can take over" : "Only the presenter or an owner can hand over";
      this.button.disabled ||= state.you?.role !== "owner";
    }
    clear(this.status);
    if (presenter === me && presenter !== null) this.status.append(h("span", { class: "live-dot" }), "You are presenting");
    else if (presenter) this.status.append(`${state.nameOf(presenter)} is presenting`, this.sync.following ? " · following" : "");
    this.browseLabel.hidden = presenter === null || presenter === me;
    this.browse.checked = this.sync.browseFreely;
  }

  private onClick(): void {
    const { state } = this.ctx;
    if (state.presenter === null || (state.presenter !== state.you?.user && state.you?.role === "owner")) void this.ctx.op("presenter.take");
    else if (state.presenter === state.you?.user) void this.ctx.op("presenter.release");
  }
}
