/** Entry point: hash routes #/login, #/rooms, #/rooms/<id>, #/invite/<token>, #/admin. */
import "./style.css";
import { isLoggedIn, onLoggedOut } from "./api";
import { mountInvite } from "./pages/invite";
import { mountLogin } from "./pages/login";
import { mountRooms } from "./pages/rooms";

const root = document.getElementById("app")!;
let dispose: (() => void) | null = null;
let generation = 0;

function route(): void {
  dispose?.();
  dispose = null;
  const current = ++generation;
  const hash = location.hash || "#/rooms";
  const [path, query = ""] = hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").map(decodeURIComponent);
  if (parts[0] === "login") return mountLogin(root, new URLSearchParams(query).get("next") ?? "#/rooms");
  if (!isLoggedIn()) {
    location.replace(`#/login?next=${encodeURIComponent(hash)}`);
    return;
  }
  if (parts[0] === "rooms" && parts[1]) {
    // The room (and three.js with it) is a separate chunk, so login and the room list load fast.
    root.replaceChildren();
    void import("./pages/room").then(({ mountRoom }) => {
      if (current === generation) dispose = mountRoom(root, parts[1]);
    });
    return;
  }
  if (parts[0] === "invite" && parts[1]) return mountInvite(root, parts[1]);
  if (parts[0] === "admin") {
    void import("./pages/admin").then(({ mountAdmin }) => {
      if (current === generation) dispose = mountAdmin(root);
    });
    return;
  }
  if (parts[0] !== "rooms") {
    location.replace("#/rooms");
    return;
  }
  mountRooms(root);
}

onLoggedOut(() => {
  if (!location.hash.startsWith("#/login")) location.hash = `#/login?next=${encodeURIComponent(location.hash)}`;
});
window.addEventListener("hashchange", route);
route();
