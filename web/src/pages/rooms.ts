/** My rooms: list, create, and join with an invite link or token. */
import { api, ApiError, inviteTokenFrom, logout, type Me, type Room } from "../api";
import { clear, h } from "../dom";

export function mountRooms(root: HTMLElement): void {
  const list = h("ul", { class: "room-list", testid: "room-list" }, h("li", { class: "empty" }, "Loading…"));
  const who = h("span", { class: "muted", testid: "whoami" });
  const titleInput = h("input", { placeholder: "New room title, e.g. Case 12 mandible plan", maxlength: 200, testid: "room-create-title" });
  const createError = h("p", { class: "error", hidden: true });
  const createForm = h("form", { class: "inline-form" }, titleInput, h("button", { class: "btn primary", type: "submit", testid: "room-create" }, "Create room"));
  const inviteInput = h("input", { placeholder: "Paste an invite link or token", testid: "invite-input" });
  const inviteError = h("p", { class: "error", testid: "invite-error", hidden: true });
  const inviteForm = h("form", { class: "inline-form" }, inviteInput, h("button", { class: "btn", type: "submit", testid: "invite-join" }, "Join"));

  createForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    createError.hidden = true;
    try {
      const room = await api.createRoom(titleInput.value.trim());
      location.hash = `#/rooms/${room.id}`;
    } catch (err) {
      createError.textContent = err instanceof Error ? err.message : "Could not create the room.";
      createError.hidden = false;
    }
  });
  inviteForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const token = inviteTokenFrom(inviteInput.value);
    if (!token) {
      inviteError.textContent = "That does not look like an invite link.";
      inviteError.hidden = false;
      return;
    }
    location.hash = `#/invite/${encodeURIComponent(token)}`;
  });

  root.replaceChildren(
    h(
      "main",
      { class: "page" },
      h("header", { class: "page-header" }, h("h1", {}, "My rooms"), who, h("button", { class: "btn ghost", testid: "logout", onclick: () => void logout().then(() => (location.hash = "#/login")) }, "Log out")),
      h("section", { class: "card" }, list),
      h("section", { class: "card" }, h("h2", {}, "New consultation room"), createForm, createError),
      h("section", { class: "card" }, h("h2", {}, "Join with an invite"), inviteForm, inviteError),
    ),
  );

  api
    .me()
    .then((me: Me) => {
      who.textContent = `${me.display_name || me.username} · ${me.role} · ${me.site_id}`;
      if (me.role === "admin") who.append(" · ", h("a", { href: "#/admin", testid: "admin-link" }, "Administration"));
    })
    .catch(() => undefined);
  api
    .rooms()
    .then((rooms: Room[]) => {
      clear(list);
      if (rooms.length === 0) list.append(h("li", { class: "empty", testid: "rooms-empty" }, "You are not in any room yet."));
      for (const r of rooms) {
        list.append(
          h(
            "li",
            { class: "room-item", testid: "room-item", "data-id": r.id },
            h("a", { href: `#/rooms/${r.id}`, testid: "room-link" }, h("span", { class: "room-name" }, r.title || "Untitled room"), h("span", { class: "muted" }, ` ${r.kind} · ${r.role ?? ""}${r.archived ? " · archived" : ""}`)),
          ),
        );
      }
    })
    .catch((err: unknown) => {
      clear(list);
      list.append(h("li", { class: "error" }, err instanceof ApiError ? err.message : "Could not load rooms."));
    });
}
