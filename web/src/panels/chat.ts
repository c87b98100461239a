/** Room chat. Messages typed while offline are shown as pending and sent on resume. */
import { clear, formatTime, h, toast } from "../dom";
import { OpRefused } from "../roomSocket";
import type { EventFrame } from "../protocol";
import type { RoomContext } from "./context";

const MAX_CHARS = 4000;

export class ChatPanel {
  readonly el: HTMLElement;
  private list: HTMLElement;
  private input: HTMLTextAreaElement;
  private pending = new Map<string, string>(); // op_id -> text, until its event arrives
  onUnread: () => void = () => undefined;

  constructor(private readonly ctx: RoomContext) {
    this.list = h("div", { class: "chat-list", testid: "chat-messages", role: "log", "aria-live": "polite" });
    this.input = h("textarea", { class: "chat-input", testid: "chat-input", rows: 2, maxlength: MAX_CHARS, placeholder: "Message the room… (Enter to send)" });
    this.input.addEventListener("keydown", (e) => {
      e.stopPropagation();
      if (e.key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        this.send();
      }
    });
    const form = h(
      "form",
      { class: "chat-form", onsubmit: (e: Event) => (e.preventDefault(), this.send()) },
      this.input,
      h("button", { class: "btn primary", type: "submit", testid: "chat-send" }, "Send"),
    );
    this.el = h("div", { class: "panel chat-panel" }, this.list, form);
  }

  focus(): void {
    this.input.focus();
  }

  onEvent(event: EventFrame): void {
    if (event.op_id && event.user === this.ctx.state.you?.user) this.pending.delete(event.op_id);
    this.render();
    if (event.user !== this.ctx.state.you?.user) this.onUnread();
  }

  render(): void {
    const { state } = this.ctx;
    const atBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    clear(this.list);
    if (state.chat.length === 0 && this.pending.size === 0) {
      this.list.append(h("div", { class: "empty" }, "No messages yet."));
    }
    for (const m of state.chat) {
      const mine = m.user === state.you?.user;
      this.list.append(
        h(
          "div",
          { class: `chat-msg${mine ? " mine" : ""}`, testid: "chat-message", "data-user": m.user },
          h("div", { class: "chat-meta" }, h("span", { class: "chat-author", style: `color:${state.colorOf(m.user)}` }, state.nameOf(m.user)), " ", h("time", {}, formatTime(m.ts))),
          h("div", { class: "chat-text", testid: "chat-text" }, m.text),
        ),
      );
    }
    for (const text of this.pending.values()) {
      this.list.append(
        h("div", { class: "chat-msg mine pending", testid: "chat-pending" }, h("div", { class: "chat-meta" }, "sending…"), h("div", { class: "chat-text" }, text)),
      );
    }
    if (atBottom || this.pending.size > 0) this.list.scrollTop = this.list.scrollHeight;
  }

  private send(): void {
    const text = this.input.value;
    if (!text.trim()) return;
    const opId = this.ctx.socket.newOpId();
    this.pending.set(opId, text);
    this.input.value = "";
    this.render();
    this.ctx.socket
      .submitOp("chat.send", { text }, opId)
      .catch((err: Error) => {
        this.pending.delete(opId);
        this.input.value = text; // give the text back so it is not lost
        this.render();
        console.warn("chat refused", err);
        const why = err instanceof OpRefused ? err.frame.message : err.message;
        toast(`Message not sent: ${why}`, "error");
      });
  }
}
