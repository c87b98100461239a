/** "Invite" popover: create a one-time invite link for the room (owners only) and copy it. */
import { api, ApiError } from "../api";
import { h, toast } from "../dom";

export function inviteButton(roomId: string): HTMLElement {
  const pop = h("div", { class: "popover", hidden: true, testid: "invite-popover" });
  const button = h("button", { class: "btn", testid: "invite-button", onclick: () => void open() }, "Invite");
  const wrap = h("div", { class: "popover-wrap" }, button, pop);

  const outside = (e: PointerEvent) => {
    if (!wrap.contains(e.target as Node)) close();
  };
  function close(): void {
    pop.hidden = true;
    document.removeEventListener("pointerdown", outside);
  }

  async function open(): Promise<void> {
    if (!pop.hidden) return close();
    document.addEventListener("pointerdown", outside);
    const role = h("select", { testid: "invite-role" }, h("option", { value: "participant" }, "Participant"), h("option", { value: "observer" }, "Observer"));
    const create = h("button", { class: "btn primary small", testid: "invite-create" }, "Create link");
    const out = h("div", { class: "invite-out" });
    create.addEventListener("click", async () => {
      create.disabled = true;
      try {
        const invite = await api.createInvite(roomId, role.value);
        const url = h("input", { class: "invite-url", testid: "invite-url", readonly: true, value: invite.url });
        const copy = h("button", { class: "btn small", onclick: () => void copyText(invite.url, url) }, "Copy");
        out.replaceChildren(url, copy, h("p", { class: "muted" }, `Single use, expires ${new Date(invite.expires_at_ms).toLocaleString()}.`));
        url.select();
      } catch (err) {
        out.replaceChildren(h("p", { class: "error" }, err instanceof ApiError ? err.message : "Could not create the invite."));
      } finally {
        create.disabled = false;
      }
    });
    pop.replaceChildren(h("div", { class: "popover-title" }, "Invite someone to this room"), h("label", {}, "Role ", role), create, out);
    pop.hidden = false;
  }

  return wrap;
}

async function copyText(text: string, input: HTMLInputElement): Promise<void> {
  try {
    await navigator.clipboard.writeText(text);
    toast("Invite link copied");
  } catch {
    input.select(); // clipboard API needs a secure context; let the user copy by hand
    toast("Press Ctrl+C to copy the link");
  }
}
