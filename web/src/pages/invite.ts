/** #/invite/<token>: accept the invite, then open the room. */
import { api, ApiError } from "../api";
import { h } from "../dom";

export function mountInvite(root: HTMLElement, token: string): void {
  const msg = h("p", { testid: "invite-status" }, "Joining the room…");
  root.replaceChildren(h("main", { class: "center-page" }, h("div", { class: "card" }, h("h1", {}, "Invitation"), msg, h("a", { href: "#/rooms" }, "My rooms"))));
  api
    .acceptInvite(token)
    .then((room) => location.replace(`#/rooms/${room.id}`))
    .catch((err: unknown) => {
      msg.className = "error";
      msg.textContent = err instanceof ApiError ? `Could not join: ${err.message}` : "Could not join the room.";
    });
}
